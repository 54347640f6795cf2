"""Fixed-rate polls: due one interval after the last was due; missed slots are skipped."""

from __future__ import annotations

import random

import pytest

from intent_fleet.operator.controller import Schedule
from intent_fleet.operator.handlers import first_due, next_due


def test_a_poll_that_ends_early_keeps_the_rate() -> None:
    # Due at 10.0, ran 10.0-10.3: the next is due at 11.0, not 11.3.
    assert next_due(10.0, 1.0, now=10.3) == 11.0


def test_n_polls_take_n_intervals_however_long_each_ran() -> None:
    due, now = 0.0, 0.0
    for _ in range(100):
        now = max(now, due) + 0.4  # each poll takes 0.4 s of a 1 s interval
        due = next_due(due, 1.0, now=now)
    assert due == pytest.approx(100.0)


@pytest.mark.parametrize(("now", "expected"), [(12.5, 13.0), (13.0, 13.0), (14.9, 15.0)])
def test_an_overrun_skips_the_missed_slots_instead_of_bursting(now: float, expected: float) -> None:
    # Due at 10.0 with a 1 s interval, and the poll (a slow bus) ended at ``now``.
    assert next_due(10.0, 1.0, now=now) == pytest.approx(expected)
    assert next_due(10.0, 1.0, now=now) >= now


def test_a_zero_interval_is_due_now() -> None:
    assert next_due(10.0, 0.0, now=12.0) == 12.0


def test_workers_of_one_group_share_a_phase_and_groups_spread() -> None:
    rng = random.Random(1)
    bus = Schedule(1.0, "http://bus:7000 team/key/api-key")
    # Two workers of the group starting a little apart are due at the same moment...
    first, second = first_due(100.0, bus, rng), first_due(100.3, bus, rng)
    assert first == pytest.approx(second) or abs(first - second) == pytest.approx(1.0)
    assert 100.0 <= first < 101.0
    # ...and at the same phase of every later interval.
    assert (first_due(5000.7, bus, rng) - first) % 1.0 == pytest.approx(0, abs=1e-6)
    # Other groups land elsewhere in the interval.
    phases = {round(first_due(0.0, Schedule(1.0, f"http://bus-{n}"), rng), 6) for n in range(50)}
    assert len(phases) == 50
    assert all(0 <= p < 1.0 for p in phases)


def test_a_worker_of_its_own_starts_at_a_random_phase() -> None:
    rng = random.Random(2)
    dues = [first_due(10.0, Schedule(2.0), rng) for _ in range(200)]
    assert all(10.0 <= d <= 12.0 for d in dues)
    assert max(dues) - min(dues) > 1.5  # spread over the interval, not bunched
