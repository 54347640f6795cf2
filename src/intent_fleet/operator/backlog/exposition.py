"""A parser for the Prometheus text exposition format (0.0.4), the part a scraper needs.

It follows the reference parser (``prometheus/common/expfmt``) where that one is
strict: metric and label names by their grammar, label values with only the
``\\\\``, ``\\"`` and ``\\n`` escapes, HELP text with only ``\\\\`` and ``\\n``,
values as Go floats (``+Inf``, ``-Inf``, ``NaN`` in any case; no ``1_000`` or hex),
timestamps as integer milliseconds, no repeated label name, no ``__name__`` label.
It is lenient where strictness would only break a scrape of someone else's
exporter: blanks and tabs around tokens, a trailing comma in a label set, an
OpenMetrics exemplar or ``# EOF`` after a sample, and family
bookkeeping (a TYPE after its samples, a second HELP) that does not change a
sample's value.

Pure and synchronous: the prometheus source runs it off the event loop for big
answers.

Why not prometheus_client's parser, which the project already depends on for writing metrics:
it takes about twice as long per scrape (``bench/metrics.py``: a 5,000-series page in 31 ms
here against 72 ms, median of three, 2.3 times), and this parse runs once per polling interval
for every IntentWorker on a Prometheus source. The processes' own ``/metrics`` are written with
prometheus_client and read back by this parser in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from intent_fleet.operator.errors import MalformedAnswerError

__all__ = ["Exposition", "MatchSum", "Sample", "parse_exposition"]

METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: What Go's ParseFloat takes that exporters write. Python's float() alone would
#: also take "1_0", surrounding blanks and non-ASCII digits, hence the ASCII flag.
VALUE: Final = re.compile(
    r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?"
    r"|[nN][aA][nN])",
    re.ASCII,
)
TIMESTAMP: Final = re.compile(r"[+-]?\d+", re.ASCII)
METRIC_TYPES: Final = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
#: A label value's characters up to its closing quote; escapes are decoded after.
_QUOTED: Final = re.compile(r'((?:[^"\\\n]|\\.)*)"')
_LABEL_ESCAPE: Final = re.compile(r"\\(.)")
_PAIR_TEXT: Final = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
#: A sample as exporters write it (no extra blanks, no exemplar): one regex instead
#: of a scan per token, several times faster on big pages. Anything else goes
#: through the scanner, which also words the errors.
_CANONICAL: Final = re.compile(
    rf"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{((?:{_PAIR_TEXT}(?:,{_PAIR_TEXT})*,?)?)\}})?"
    r" ([^ \t]+)(?: ([^ \t]+))?"
)
_PAIR: Final = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
_HELP_ESCAPE: Final = re.compile(r"\\(.?)")
_BLANKS: Final = " \t"


@dataclass(frozen=True, slots=True)
class Sample:
    """One line ``name{labels} value [timestamp]``."""

    name: str
    labels: Mapping[str, str]
    value: float
    #: Milliseconds since the epoch, when the exporter sent one.
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MatchSum:
    """The sum of the samples one query matched."""

    total: float
    #: How many samples matched (0: the family is there but has no such series).
    series: int


@dataclass(frozen=True, slots=True)
class Exposition:
    """Everything a scrape said, in order."""

    samples: tuple[Sample, ...]
    #: Metric name -> HELP text (escapes decoded).
    help: Mapping[str, str] = field(default_factory=dict)
    #: Metric name -> TYPE.
    types: Mapping[str, str] = field(default_factory=dict)

    def has_metric(self, name: str) -> bool:
        """Whether ``name`` is declared (HELP/TYPE) or has a sample: an exporter that
        declares a family with no series is reporting "nothing", not "unknown"."""
        return name in self.types or name in self.help or any(s.name == name for s in self.samples)

    def sum(self, name: str, labels: Mapping[str, str]) -> MatchSum:
        """Sum of the samples named exactly ``name`` whose labels include ``labels``.

        A matcher with an empty value also matches a missing label, as PromQL's
        ``{l=""}`` does.
        """
        total = 0.0
        series = 0
        for s in self.samples:
            if s.name == name and all(s.labels.get(k, "") == v for k, v in labels.items()):
                total += s.value
                series += 1
        return MatchSum(total=total, series=series)


def parse_exposition(text: str) -> Exposition:
    """Parse a whole scrape; :class:`MalformedAnswerError` at the first malformed line."""
    samples: list[Sample] = []
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.lstrip(_BLANKS)
        if not line:
            continue
        try:
            if line.startswith("#"):
                _parse_comment(line, helps, types)
            else:
                samples.append(_parse_sample(line))
        except _LineError as exc:
            raise MalformedAnswerError(f"line {number}: {exc}") from None
    return Exposition(samples=tuple(samples), help=helps, types=types)


class _LineError(MalformedAnswerError):
    """A problem within one line; :func:`parse_exposition` adds the line number."""


def _parse_comment(line: str, helps: dict[str, str], types: dict[str, str]) -> None:
    words = line[1:].lstrip(_BLANKS)
    keyword, _, rest = _split_word(words)
    if keyword not in ("HELP", "TYPE"):
        return  # a plain comment, "# EOF" included
    if not rest:
        raise _LineError(f"{keyword} without a metric name")
    name, _, text = _split_word(rest)
    if not METRIC_NAME.fullmatch(name):
        raise _LineError(f"{keyword} names an invalid metric name")
    if keyword == "TYPE":
        kind = text.rstrip(_BLANKS)
        if kind not in METRIC_TYPES:
            raise _LineError(f"unknown metric type for {name}")
        types[name] = kind
    else:
        helps[name] = _unescape_help(text)


def _split_word(text: str) -> tuple[str, str, str]:
    """(first word, the blank run after it, the rest): like ``str.partition`` on blanks."""
    end = 0
    while end < len(text) and text[end] not in _BLANKS:
        end += 1
    rest_at = end
    while rest_at < len(text) and text[rest_at] in _BLANKS:
        rest_at += 1
    return text[:end], text[end:rest_at], text[rest_at:]


def _unescape_help(text: str) -> str:
    def decode(m: re.Match[str]) -> str:
        c = m.group(1)
        if c == "\\":
            return "\\"
        if c == "n":
            return "\n"
        raise _LineError("invalid escape in HELP text (only \\\\ and \\n are allowed)")

    return _HELP_ESCAPE.sub(decode, text)


def _parse_sample(line: str) -> Sample:
    canonical = _CANONICAL.fullmatch(line)
    if canonical is not None:
        sample = _canonical_sample(canonical)
        if sample is not None:
            return sample
    return _scan_sample(line)


def _canonical_sample(m: re.Match[str]) -> Sample | None:
    """The sample of a canonical line, or None to leave the line to the scanner."""
    name, block, value, timestamp = m.groups()
    if not VALUE.fullmatch(value) or (timestamp is not None and not TIMESTAMP.fullmatch(timestamp)):
        return None
    labels: dict[str, str] = {}
    if block:
        for pair in _PAIR.finditer(block):
            label = pair.group(1)
            if label in labels or label == "__name__":
                return None
            labels[label] = _unescape_label(pair.group(2), label)
    return Sample(
        name=name,
        labels=labels,
        value=float(value),
        timestamp_ms=int(timestamp) if timestamp is not None else None,
    )


def _scan_sample(line: str) -> Sample:
    m = METRIC_NAME.match(line)
    if m is None:
        raise _LineError("expected a metric name")
    name = m.group()
    pos = _skip_blanks(line, m.end())
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        pos = _skip_blanks(line, _parse_labels(line, pos + 1, labels))
    elif pos == m.end() and pos < len(line):
        raise _LineError(f"unexpected character after the metric name {name}")
    value_token, _, rest = _split_word(line[pos:])
    if not value_token:
        raise _LineError(f"sample {name} has no value")
    if not VALUE.fullmatch(value_token):
        raise _LineError(f"sample {name} has an invalid value")
    timestamp: int | None = None
    ts_token, _, tail = _split_word(rest)
    if ts_token and not ts_token.startswith("#"):
        if not TIMESTAMP.fullmatch(ts_token):
            raise _LineError(f"sample {name} has an invalid timestamp")
        timestamp = int(ts_token)
        ts_token, _, tail = _split_word(tail)
    # Whatever follows "#" is an OpenMetrics exemplar: not needed, not an error.
    if ts_token and not ts_token.startswith("#"):
        raise _LineError(f"unexpected text after the value of {name}")
    return Sample(name=name, labels=labels, value=float(value_token), timestamp_ms=timestamp)


def _parse_labels(line: str, pos: int, labels: dict[str, str]) -> int:
    """Fill ``labels`` from just after ``{``; returns the position after ``}``."""
    while True:
        pos = _skip_blanks(line, pos)
        if pos < len(line) and line[pos] == "}":
            return pos + 1
        m = LABEL_NAME.match(line, pos)
        if m is None:
            raise _LineError("expected a label name or '}'")
        label = m.group()
        if label == "__name__":
            raise _LineError("the label name __name__ is reserved")
        if label in labels:
            raise _LineError(f"label {label} appears twice")
        pos = _skip_blanks(line, m.end())
        if not line.startswith("=", pos):
            raise _LineError(f"expected '=' after label {label}")
        pos = _skip_blanks(line, pos + 1)
        if not line.startswith('"', pos):
            raise _LineError(f"expected '\"' to open the value of label {label}")
        q = _QUOTED.match(line, pos + 1)
        if q is None:
            raise _LineError(f"unterminated value of label {label}")
        labels[label] = _unescape_label(q.group(1), label)
        pos = _skip_blanks(line, q.end())
        if line.startswith(",", pos):
            pos += 1
        elif not line.startswith("}", pos):
            raise _LineError(f"expected ',' or '}}' after label {label}")


def _unescape_label(text: str, label: str) -> str:
    if "\\" not in text:
        return text

    def decode(m: re.Match[str]) -> str:
        c = m.group(1)
        if c in ('"', "\\"):
            return c
        if c == "n":
            return "\n"
        raise _LineError(f"invalid escape in the value of label {label}")

    return _LABEL_ESCAPE.sub(decode, text)


def _skip_blanks(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in _BLANKS:
        pos += 1
    return pos
