"""Fixed-rate polls: due one interval after the last was due; missed slots are skipped."""

from __future__ import annotations

import pytest

from intent_fleet.operator.handlers import next_due


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
