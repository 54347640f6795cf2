"""The README stays true: its flag table is the sidecar's own declaration."""

from __future__ import annotations

from pathlib import Path

from intent_fleet.cli.sidecar_command import FLAGS, flag_table

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(text: str, name: str) -> str:
    start = text.index(f"<!-- {name}:start -->") + len(f"<!-- {name}:start -->")
    return text[start : text.index(f"<!-- {name}:end -->")].strip()


def test_sidecar_flag_table_matches_the_declaration() -> None:
    assert _section(README.read_text(), "sidecar-flags") == flag_table()


def test_every_flag_has_an_intent_environment_variable() -> None:
    assert len({f.env for f in FLAGS}) == len(FLAGS)
    assert all(f.env.startswith("INTENT_") for f in FLAGS)


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text()[:1500]
    assert "make demo" in head
    assert "make test" in head
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
