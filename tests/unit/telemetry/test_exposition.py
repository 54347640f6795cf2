"""The processes' registry: their own series plus runtime figures, one registry per
component, read back as a scrape would show them, in text the operator's parser reads."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from intent_fleet.operator.backlog.exposition import parse_exposition
from intent_fleet.telemetry import LATENCY_BUCKETS, exposition, process_registry, sample


def test_each_component_keeps_its_own_series_and_gets_the_runtime_figures() -> None:
    first, second = process_registry(), process_registry()
    Counter("jobs", "Jobs.", ["op"], registry=first).labels(op="claim").inc(3)
    Counter("jobs", "Jobs.", ["op"], registry=second)  # the same name again: no clash
    assert sample(first, "jobs_total", op="claim") == 3
    assert sample(second, "jobs_total", op="claim") == 0
    text = exposition(first).decode()
    assert "process_resident_memory_bytes" in text
    assert "python_gc_collections_total" in text


def test_the_text_is_what_the_operators_own_parser_reads() -> None:
    registry = process_registry()
    Gauge("depth", 'Depth, "quoted".', ["goal"], registry=registry).labels(goal='a"b\\c').set(7)
    Histogram("took_seconds", "Took.", buckets=LATENCY_BUCKETS, registry=registry).observe(0.02)
    parsed = parse_exposition(exposition(registry).decode())
    depth = [s for s in parsed.samples if s.name == "depth"]
    assert [(s.labels, s.value) for s in depth] == [({"goal": 'a"b\\c'}, 7.0)]
    buckets = {s.labels["le"]: s.value for s in parsed.samples if s.name == "took_seconds_bucket"}
    assert buckets["0.01"] == 0 and buckets["0.025"] == 1 and buckets["+Inf"] == 1
