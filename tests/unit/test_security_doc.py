"""docs/security.md stays true: every test it names as proof exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "security.md"

#: `tests-relative/path.py` or `path.py::test_name[param]` or `::test_name` (same file as before).
REFERENCE = re.compile(r"`((?:unit|integration|e2e)/[\w/]+\.py)?(?:::(\w+)(?:\[[^\]]*\])?)?`")


def references() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for line in DOC.read_text().splitlines():
        current: str | None = None
        for match in REFERENCE.finditer(line):
            path, name = match.groups()
            if path:
                current = path
            if current is None:
                continue
            found.append((current, name))
    return found


def test_the_security_page_names_tests_that_exist() -> None:
    refs = references()
    assert len(refs) > 40, refs  # the page is made of them
    missing = []
    for path, name in refs:
        source = REPO / "tests" / path
        if not source.exists():
            missing.append(path)
        elif name and not re.search(rf"^(async )?def {name}\b", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_the_readme_links_the_security_page() -> None:
    assert "(docs/security.md)" in (REPO / "README.md").read_text()
