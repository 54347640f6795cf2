"""The shared Prometheus registry renders the text exposition format exactly."""

from __future__ import annotations

import pytest

from intent_fleet.telemetry import (
    CONTENT_TYPE,
    Counter,
    Gauge,
    Histogram,
    format_labels,
    render,
)


def test_labels_are_escaped_and_an_unlabelled_series_has_no_braces() -> None:
    assert format_labels(()) == ""
    assert format_labels((("a", 'say "hi"\\\n'),)) == '{a="say \\"hi\\"\\\\\\n"}'
    assert format_labels((("a", "1"),), ("le", "+Inf")) == '{a="1",le="+Inf"}'


def test_a_counter_keys_series_by_label_set_whatever_the_argument_order() -> None:
    counter = Counter("jobs_total", "Jobs.")
    counter.inc(op="claim", kind="x")
    counter.inc(2, kind="x", op="claim")
    counter.inc()
    assert counter.get(op="claim", kind="x") == 3
    assert counter.get() == 1
    assert counter.get(op="other") == 0
    assert counter.render() == [
        "# HELP jobs_total Jobs.",
        "# TYPE jobs_total counter",
        "jobs_total 1",
        'jobs_total{kind="x",op="claim"} 3',
    ]


def test_a_counter_never_goes_down() -> None:
    with pytest.raises(ValueError, match="cannot go down"):
        Counter("jobs_total", "Jobs.").inc(-1)


def test_a_gauge_is_set_read_and_its_series_removed() -> None:
    gauge = Gauge("depth", "Depth.")
    assert gauge.render() == ["# HELP depth Depth.", "# TYPE depth gauge"]
    gauge.set(3, name="a")
    gauge.set(7, name="a")
    gauge.set(0.5, name="b")
    assert gauge.get(name="a") == 7
    assert gauge.render()[2:] == ['depth{name="a"} 7', 'depth{name="b"} 0.5']
    gauge.remove(name="a")
    gauge.remove(name="never-set")
    assert gauge.get(name="a") is None
    assert gauge.render()[2:] == ['depth{name="b"} 0.5']


def test_a_histogram_renders_cumulative_buckets_sum_and_count() -> None:
    histogram = Histogram("read_seconds", "Reads.", (0.1, 1))
    for value in (0.05, 0.1, 0.5, 3):
        histogram.observe(value, source="s")
    assert histogram.count(source="s") == 4
    assert histogram.count(source="none") == 0
    assert histogram.render() == [
        "# HELP read_seconds Reads.",
        "# TYPE read_seconds histogram",
        'read_seconds_bucket{source="s",le="0.1"} 2',
        'read_seconds_bucket{source="s",le="1"} 3',
        'read_seconds_bucket{source="s",le="+Inf"} 4',
        'read_seconds_sum{source="s"} 3.650000',
        'read_seconds_count{source="s"} 4',
    ]


def test_render_joins_families_in_order_and_ends_with_a_newline() -> None:
    first, second = Gauge("a", "A."), Counter("b_total", "B.")
    first.set(1)
    text = render([first, second])
    assert text == "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b_total B.\n# TYPE b_total counter\n"
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
