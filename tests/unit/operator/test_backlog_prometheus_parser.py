"""The Prometheus text-format parser: round trips of random pages, the grammar's edges, errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intent_fleet.operator.backlog import exposition
from intent_fleet.operator.backlog.exposition import Exposition, Sample, parse_exposition
from intent_fleet.operator.errors import MalformedAnswerError

# --- a renderer with every liberty the format allows -----------------------------

metric_names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,15}", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n != "__name__"
)
#: Any text at all: quotes, backslashes, newlines, braces, "#", non-ASCII.
label_values = st.text(max_size=12)
blanks = st.sampled_from([" ", "\t", "  ", " \t "])
optional_blanks = st.sampled_from(["", " ", "\t"])


@st.composite
def values(draw: st.DrawFn) -> tuple[float, str]:
    """A value and one of the ways an exporter may write it."""
    kind = draw(st.sampled_from(["float", "int", "inf", "-inf", "nan"]))
    if kind == "float":
        v = draw(st.floats(allow_nan=False, allow_infinity=False))
        text = draw(st.sampled_from([repr(v), f"{v:e}", f"{v:E}"]))
        return float(text), text  # "%e" rounds: the text is the truth
    if kind == "int":
        n = draw(st.integers(-(2**70), 2**70))
        return float(n), draw(st.sampled_from([str(n), f"{n:+d}"]))
    if kind == "inf":
        return math.inf, draw(st.sampled_from(["+Inf", "Inf", "inf", "+inf", "Infinity"]))
    if kind == "-inf":
        return -math.inf, draw(st.sampled_from(["-Inf", "-inf", "-Infinity"]))
    return math.nan, draw(st.sampled_from(["NaN", "nan", "Nan"]))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


@dataclass(frozen=True)
class Rendered:
    text: str
    samples: list[Sample]
    helps: dict[str, str]


@st.composite
def sample_lines(draw: st.DrawFn) -> tuple[Sample, str]:
    name = draw(metric_names)
    labels = draw(st.dictionaries(label_names, label_values, max_size=4))
    value, value_text = draw(values())
    timestamp = draw(st.none() | st.integers(-(2**63), 2**63 - 1))
    line = draw(optional_blanks) + name
    if labels or draw(st.booleans()):
        pairs = [
            f'{draw(optional_blanks)}{k}{draw(optional_blanks)}={draw(optional_blanks)}"'
            f'{escape_label(v)}"{draw(optional_blanks)}'
            for k, v in labels.items()
        ]
        trailing = "," if labels and draw(st.booleans()) else ""
        line += draw(optional_blanks) + "{" + ",".join(pairs) + trailing + "}"
        line += draw(optional_blanks) if draw(st.booleans()) else draw(blanks)
    else:
        line += draw(blanks)
    line += value_text
    if timestamp is not None:
        line += draw(blanks) + str(timestamp)
    line += draw(optional_blanks)
    return Sample(name=name, labels=labels, value=value, timestamp_ms=timestamp), line


@st.composite
def pages(draw: st.DrawFn) -> Rendered:
    lines: list[str] = []
    samples: list[Sample] = []
    helps: dict[str, str] = {}
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["sample", "sample", "help", "type", "comment", "blank"]))
        if kind == "sample":
            sample, line = draw(sample_lines())
            samples.append(sample)
            lines.append(line)
        elif kind == "help":
            # Blanks after the name separate it from the text (as in the reference parser).
            name = draw(metric_names)
            text = draw(st.text(max_size=20).map(lambda t: t.lstrip(" \t")))
            helps[name] = text
            lines.append(f"#{draw(blanks)}HELP{draw(blanks)}{name} {escape_help(text)}")
        elif kind == "type":
            kind_word = draw(
                st.sampled_from(["counter", "gauge", "histogram", "summary", "untyped"])
            )
            lines.append(f"# TYPE {draw(metric_names)} {kind_word}")
        elif kind == "comment":
            comment = draw(st.text(max_size=20).filter(lambda t: "\n" not in t))
            # "# HELP"/"# TYPE" would be declarations, not comments.
            if comment.lstrip(" \t").startswith(("HELP", "TYPE")):
                comment = "x" + comment
            lines.append("#" + comment)
        else:
            lines.append(draw(st.sampled_from(["", " ", "\t"])))
    ending = draw(st.sampled_from(["", "\n"]))
    return Rendered(text="\n".join(lines) + ending, samples=samples, helps=helps)


def same_value(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@given(pages())
def test_a_rendered_page_parses_back_to_the_same_samples(page: Rendered) -> None:
    parsed = parse_exposition(page.text)
    assert len(parsed.samples) == len(page.samples)
    for got, want in zip(parsed.samples, page.samples, strict=True):
        assert got.name == want.name
        assert dict(got.labels) == dict(want.labels)
        assert same_value(got.value, want.value), (got.value, want.value)
        assert got.timestamp_ms == want.timestamp_ms
    assert dict(parsed.help) == page.helps


@given(sample_lines())
def test_the_fast_path_agrees_with_the_scanner(case: tuple[Sample, str]) -> None:
    # Canonical lines take one regex; the scanner is the reference for every line.
    _sample, line = case
    line = line.lstrip(" \t")
    fast, scanned = exposition._parse_sample(line), exposition._scan_sample(line)
    assert (fast.name, dict(fast.labels), fast.timestamp_ms) == (
        scanned.name,
        dict(scanned.labels),
        scanned.timestamp_ms,
    )
    assert same_value(fast.value, scanned.value)


@given(st.text(max_size=200))
def test_any_text_parses_or_fails_with_an_exposition_error(text: str) -> None:
    try:
        parse_exposition(text)
    except MalformedAnswerError as exc:
        assert str(exc).startswith("line ")


@given(
    st.lists(st.tuples(label_values, st.integers(0, 10_000)), max_size=6),
    label_values,
)
def test_sum_adds_exactly_the_matching_series(series: list[tuple[str, int]], wanted: str) -> None:
    lines = ["# TYPE q gauge"]
    lines += [f'q{{goal="{escape_label(g)}",state="ready"}} {n}' for g, n in series]
    lines += [f'q{{goal="{escape_label(g)}",state="claimed"}} 1' for g, _ in series]
    lines += [f'q_other{{goal="{escape_label(g)}",state="ready"}} 7' for g, _ in series]
    page = parse_exposition("\n".join(lines))
    got = page.sum("q", {"goal": wanted, "state": "ready"})
    assert got.total == sum(n for g, n in series if g == wanted)
    assert got.series == sum(1 for g, _ in series if g == wanted)


# --- worked examples ---------------------------------------------------------------

BUS_PAGE = """\
# HELP intent_bus_backlog Intents per namespace and goal: ready to claim, delayed, or claimed.
# TYPE intent_bus_backlog gauge
intent_bus_backlog{namespace="default",goal="g",state="ready"} 3
intent_bus_backlog{namespace="default",goal="g",state="delayed"} 2
intent_bus_backlog{namespace="default",goal="g",state="claimed"} 1
intent_bus_backlog{namespace="default",goal="quote \\" and \\\\ back",state="ready"} 1
intent_bus_backlog{namespace="other",goal="g",state="ready"} 1
# HELP intent_bus_dead_letters_total Dead intents kept for inspection.
# TYPE intent_bus_dead_letters_total gauge
intent_bus_dead_letters_total 1
intent_bus_uptime_seconds 12.5
"""


def test_the_bus_page() -> None:
    page = parse_exposition(BUS_PAGE)
    ready = {"namespace": "default", "goal": "g", "state": "ready"}
    assert page.sum("intent_bus_backlog", ready).total == 3
    assert page.sum("intent_bus_backlog", {**ready, "state": "claimed"}).total == 1
    assert page.sum("intent_bus_backlog", {"goal": "g", "state": "ready"}).total == 4
    assert page.sum("intent_bus_backlog", {"goal": 'quote " and \\ back'}).total == 1
    assert page.sum("intent_bus_dead_letters_total", {}).total == 1
    assert page.types["intent_bus_backlog"] == "gauge"
    assert page.help["intent_bus_dead_letters_total"] == "Dead intents kept for inspection."


def test_declared_but_empty_differs_from_unknown() -> None:
    page = parse_exposition("# TYPE q gauge\n# HELP r r\nx 1\n")
    assert page.has_metric("q")
    assert page.has_metric("r")
    assert page.has_metric("x")
    assert not page.has_metric("y")
    assert page.sum("q", {"goal": "g"}).series == 0


def test_an_empty_matcher_matches_a_missing_label() -> None:
    page = parse_exposition('m{a="1"} 1\nm 2\nm{a=""} 4\n')
    assert page.sum("m", {"a": ""}).total == 6
    assert page.sum("m", {}).total == 7


@pytest.mark.parametrize(
    ("line", "value", "timestamp"),
    [
        ("m 1", 1.0, None),
        ("m{} 1 -5", 1.0, -5),
        ('m{a="b",} .5 1700000000000', 0.5, 1_700_000_000_000),
        ('m { a = "b" , } 5.', 5.0, None),
        ('m{a="b"}1e3', 1000.0, None),
        ("m\t+Inf\t\t", math.inf, None),
        ("m -Infinity", -math.inf, None),
        ("m 1E-3", 0.001, None),
        # An OpenMetrics exemplar after the value is ignored.
        ('m{a="b"} 4 # {trace_id="x"} 1.0', 4.0, None),
        ("m 4 1000 # {} 1", 4.0, 1000),
        ('m{a="}{,=#"} 2', 2.0, None),
    ],
)
def test_sample_line_forms(line: str, value: float, timestamp: int | None) -> None:
    [sample] = parse_exposition(line).samples
    assert sample.name == "m"
    assert sample.value == value
    assert sample.timestamp_ms == timestamp


def test_nan_and_escapes() -> None:
    [a, b] = parse_exposition('n NaN\nn{v="x\\ny\\\\z\\"w"} 0\n').samples
    assert math.isnan(a.value)
    assert b.labels == {"v": 'x\ny\\z"w'}


def test_comments_and_eof_are_skipped() -> None:
    page = parse_exposition("# just words\n#\n   # HELPING hand\n# EOF\n\n  m 1\n")
    assert [s.name for s in page.samples] == ["m"]
    assert page.help == {}
    assert parse_exposition("# HELP m\n").help == {"m": ""}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<html><body>login</body></html>", "line 1: expected a metric name"),
        ('{"goals": []}', "line 1: expected a metric name"),
        ("m\n1 2", "line 1: sample m has no value"),
        ("m 1_0", "invalid value"),
        ("m 0x10", "invalid value"),
        ("m infinit", "invalid value"),
        ("m 1e", "invalid value"),
        ("m \u0663", "invalid value"),
        ("m 1 \u0663", "invalid timestamp"),
        ("m --1", "invalid value"),
        ("m 1 1.5", "invalid timestamp"),
        ("m 1 2 3", "unexpected text"),
        ("m-x 1", "unexpected character after the metric name"),
        ('m{a="b" 1', "expected ',' or '}'"),
        ('m{a="b} 1', "unterminated value"),
        ("m{a=b} 1", "expected '\"'"),
        ('m{a "b"} 1', "expected '='"),
        ('m{1a="b"} 1', "expected a label name"),
        ('m{a="b",a="c"} 1', "appears twice"),
        ('m{__name__="x"} 1', "reserved"),
        ('m{a="\\t"} 1', "invalid escape"),
        ("# HELP m a \\t b", "invalid escape in HELP"),
        ("# TYPE m gauges", "unknown metric type"),
        ("# TYPE 1m gauge", "invalid metric name"),
        ("# HELP", "HELP without a metric name"),
        ("m 1\r", "invalid value"),
        ('ok 1\nok{a="\n"} 1', "line 2:"),
    ],
)
def test_malformed_lines_are_named(text: str, fragment: str) -> None:
    with pytest.raises(MalformedAnswerError, match=None) as caught:
        parse_exposition(text)
    assert fragment in str(caught.value)


def test_an_empty_page_is_empty() -> None:
    assert parse_exposition("") == Exposition(samples=())
    assert parse_exposition("\n\n") == Exposition(samples=())
