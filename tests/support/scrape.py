"""Reading a /metrics scrape in tests: samples by name and label set, whatever the order the
exporter wrote the labels in or how it formats numbers (3 or 3.0)."""

from __future__ import annotations

from intent_fleet.operator.backlog.exposition import parse_exposition

__all__ = ["assert_samples", "samples", "value"]

Key = tuple[str, frozenset[tuple[str, str]]]


def samples(text: str) -> dict[Key, float]:
    return {(s.name, frozenset(s.labels.items())): s.value for s in parse_exposition(text).samples}


def _key(line: str) -> tuple[Key, float]:
    (sample,) = parse_exposition(line + "\n").samples
    return (sample.name, frozenset(sample.labels.items())), sample.value


def value(text: str, series: str) -> float:
    """One series (``name{labels}``, labels in any order); 0 when the scrape lacks it."""
    key, _ = _key(series + " 0")
    return samples(text).get(key, 0.0)


def assert_samples(text: str, *lines: str) -> None:
    """Each ``'name{labels} value'`` of ``lines`` is in the scrape, with that value."""
    found = samples(text)
    for line in lines:
        key, want = _key(line)
        assert found.get(key) == want, f"{line!r}: the scrape has {found.get(key)}\n{text}"
