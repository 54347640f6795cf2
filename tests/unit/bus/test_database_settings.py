"""PostgreSQL settings and the wake-up bookkeeping."""

from __future__ import annotations

import pytest

from intent_fleet.bus.postgres.wakeups import Waiter, Wakeups, notification, parse_notification
from intent_fleet.bus.settings import AuthSettings, BusSettings, DatabaseSettings
from intent_fleet.protocol import InvalidSettingError


def test_database_settings_name_what_is_wrong() -> None:
    with pytest.raises(InvalidSettingError) as info:
        BusSettings(
            auth=AuthSettings(admin_secret="a" * 40),
            database=DatabaseSettings(url="mysql://x", pool_size=0, statement_timeout_seconds=0),
        )
    message = str(info.value)
    for field in ("url", "pool_size", "statement_timeout_seconds"):
        assert field in message, message
    assert not DatabaseSettings().enabled
    assert DatabaseSettings(url="postgresql://db/bus").enabled


def test_a_notification_names_its_goal_whatever_the_goal_holds() -> None:
    assert parse_notification(notification("ns", "a/b c")) == ("ns", "a/b c")
    assert parse_notification("no separator") is None


def test_wakeups_wake_the_waiters_of_a_goal_and_interrupt_one_session() -> None:
    wakeups = Wakeups()
    on_goal = Waiter(pairs=frozenset({("ns", "g")}), key_id="k1", session="s1", is_claim=True)
    any_goal = Waiter(namespace="ns", key_id="k1", session="s2", is_claim=True)
    watch = Waiter(pairs=frozenset({("ns", "g"), ("other", "h")}), key_id="k2")
    for waiter in (on_goal, any_goal, watch):
        wakeups.add(waiter)
    assert (wakeups.claims(), wakeups.watches()) == (2, 1)
    assert wakeups.count_of("k1", claims=True) == 2
    wakeups.ready([("other", "h")])
    assert [w.event.is_set() for w in (on_goal, any_goal, watch)] == [False, False, True]
    wakeups.ready([("ns", "x")])
    assert [w.event.is_set() for w in (on_goal, any_goal)] == [False, True]
    assert wakeups.interrupt("k1", "s1") == 1
    assert on_goal.interrupted and not any_goal.interrupted
    assert wakeups.interrupt("k2", "s1") == 0  # a session is its own key's only
    wakeups.remove(on_goal)
    wakeups.remove(on_goal)  # removing twice is harmless
    assert len(wakeups) == 2
