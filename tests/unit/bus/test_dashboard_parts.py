"""The dashboard's pure parts: session cookies, the login brake, the throughput series."""

from __future__ import annotations

from collections import Counter

from intent_fleet.bus.dashboard.activity import GoalActivity, WorkersSeen
from intent_fleet.bus.dashboard.sessions import LoginBrake, SessionKeys
from intent_fleet.bus.dashboard.throughput import KINDS, Throughput

SECRET = "s" * 32


def test_a_session_lasts_its_lifetime_and_only_for_its_secret() -> None:
    keys = SessionKeys(SECRET, lifetime_seconds=100)
    session = keys.open(1000.0)
    assert session.expires_at == 1100.0
    assert keys.check(session.cookie, 1099.0) == session
    assert keys.check(session.cookie, 1100.0) is None  # ended
    assert SessionKeys("t" * 32, lifetime_seconds=100).check(session.cookie, 1000.0) is None
    assert keys.open(1000.0).csrf != session.csrf  # each login its own token


def test_a_cookie_changed_anywhere_is_refused() -> None:
    keys = SessionKeys(SECRET, lifetime_seconds=100)
    cookie = keys.open(1000.0).cookie
    expires, rest = cookie.split(".", 1)
    for bad in (f"9{expires}.{rest}", cookie[:-1] + ("A" if cookie[-1] != "A" else "B"), "", "."):
        assert keys.check(bad, 1000.0) is None, bad


def test_the_brake_allows_five_failures_then_one_per_cooldown() -> None:
    now = [0.0]
    brake = LoginBrake(clock=lambda: now[0], allowed_failures=5, cooldown_seconds=10)
    for _ in range(5):
        assert brake.wait_for("a") == 0
        brake.failed("a")
    assert brake.wait_for("a") == 10
    assert brake.wait_for("b") == 0  # per address
    now[0] = 10.0
    assert brake.wait_for("a") == 0
    brake.failed("a")
    assert brake.wait_for("a") == 10
    brake.succeeded("a")
    assert brake.wait_for("a") == 0


def test_the_brake_forgets_the_oldest_address_when_full() -> None:
    brake = LoginBrake(clock=lambda: 0.0, allowed_failures=1, max_addresses=2)
    for address in ("a", "b", "c"):
        brake.failed(address)
    assert brake.wait_for("a") == 0 and brake.wait_for("c") > 0


def test_throughput_counts_each_second_and_zero_for_missed_ones() -> None:
    answers: Counter[tuple[str, int]] = Counter()
    chart = Throughput(seconds=5)
    chart.sample(100.2, answers)  # the first sample only sets the baseline
    answers[KINDS["published"]] += 3
    answers[KINDS["failed"]] += 1
    answers[("/intent", 400)] += 7  # refused publishes are not throughput
    chart.sample(101.1, answers)
    chart.sample(101.9, answers)  # the same second: nothing new
    answers[KINDS["published"]] += 2
    chart.sample(104.0, answers)  # 102 and 103 missed
    series = chart.series()
    assert series["published"] == [0, 3, 0, 0, 2]
    assert series["failed"] == [0, 1, 0, 0, 0]
    assert series["fulfilled"] == [0] * 5


def test_goal_activity_counts_the_last_sixty_seconds_and_fifteen_minutes() -> None:
    now = [600.0]  # the start of minute 10
    activity = GoalActivity(lambda: now[0])
    for _ in range(6):
        activity.finished("ns", "g", failed=False)
    activity.finished("ns", "g", failed=True)
    now[0] = 630.0  # half way through minute 10
    [(pair, seen)] = activity.of([("ns", "g")]).items()
    assert pair == ("ns", "g")
    assert (seen["fulfilled_per_minute"], seen["failed_per_minute"]) == (6, 1)
    now[0] = 690.0  # half way through minute 11: half of minute 10 still counts
    activity.finished("ns", "g", failed=False)
    seen = activity.of([("ns", "g")])[("ns", "g")]
    assert (seen["fulfilled_per_minute"], seen["failed_per_minute"]) == (1 + 3, 0)
    assert seen["spark"][-2:] == [6, 1] and len(seen["spark"]) == 15
    assert activity.recent() == [("ns", "g")]
    now[0] += 20 * 60  # quiet for longer than the window
    assert activity.recent() == []
    assert activity.of([("other", "x")])[("other", "x")]["spark"] == []


def test_workers_seen_keep_their_claims_and_show_what_they_hold() -> None:
    now = [5.0]
    workers = WorkersSeen(lambda: now[0])
    workers.claimed("pod-a", key_id="k1", capabilities=["gpu", "avx"], count=2)
    now[0] = 7.0
    workers.claimed(None, key_id="k2", capabilities=[], count=0)
    workers.claimed("pod-a", key_id="k1", capabilities=["gpu", "avx"], count=1)
    listing = workers.listing({"pod-a": 2})
    assert [w["worker"] for w in listing] == ["pod-a", "key k2"]  # most recent first
    assert listing[0] == {
        "worker": "pod-a",
        "key_id": "k1",
        "capabilities": ["avx", "gpu"],
        "last_seen": 7.0,
        "claims": 3,
        "held": 2,
    }
    assert listing[1]["held"] == 0
