"""The moving-window limiters behind EPOCHAL_PREDICTIONS_PER_SECOND, on a clock the test moves.

Every rule is checked on both: in process memory, and in the broker's Redis (what several API processes share).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
import redis

from api.http.rate_limits import FallbackWindow, MovingWindow, SharedMovingWindow, Window
from infra import events


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


MakeWindow = Callable[..., Window]


@pytest.fixture(params=["memory", "redis"])
def make_window(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> MakeWindow:
    if request.param == "memory":
        return MovingWindow
    request.getfixturevalue("broker_url")
    monkeypatch.setattr(SharedMovingWindow, "PREFIX", f"epochal:test-rate:{uuid.uuid4().hex}:")  # keys of this test
    return lambda **kwargs: SharedMovingWindow(events.redis_client(), **kwargs)


def test_up_to_the_limit_fits_and_the_next_unit_waits_for_the_oldest_hit(make_window: MakeWindow, clock: Clock) -> None:
    limiter = make_window(window_s=1.0, clock=clock)
    assert limiter.hit("u", 3) == 0
    clock.now += 0.25
    assert limiter.hit("u", 3, cost=2) == 0
    clock.now += 0.25
    # 3 of 3 used: one more unit fits when the first hit, 0.5 s ago, leaves the window.
    assert limiter.hit("u", 3) == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.hit("u", 3) == 0


def test_a_refused_hit_is_not_counted_and_a_cost_waits_for_enough_units_to_leave(
    make_window: MakeWindow, clock: Clock
) -> None:
    limiter = make_window(window_s=1.0, clock=clock)
    for _ in range(4):
        assert limiter.hit("u", 4) == 0
        clock.now += 0.1
    # Three units must leave for a cost of 3: the third hit leaves 1.0 s after it was made, at 1000.2 + 1.0.
    assert limiter.hit("u", 4, cost=3) == pytest.approx(1000.2 + 1.0 - clock.now)
    assert limiter.hit("u", 4, cost=3) > 0  # the refusal counted nothing: still the same answer
    clock.now = 1000.2 + 1.0
    assert limiter.hit("u", 4, cost=3) == 0


def test_keys_are_counted_apart(make_window: MakeWindow, clock: Clock) -> None:
    limiter = make_window(window_s=1.0, clock=clock)
    assert limiter.hit("a", 1) == 0
    assert limiter.hit("a", 1) > 0
    assert limiter.hit("b", 1) == 0


def test_keys_unused_for_a_window_are_dropped(clock: Clock) -> None:
    limiter = MovingWindow(window_s=1.0, clock=clock)
    for user in range(100):
        limiter.hit(str(user), 5)
    assert len(limiter) == 100
    clock.now += 1.5
    limiter.hit("late", 5)
    assert len(limiter) == 1


def test_concurrent_hits_never_count_past_the_limit(make_window: MakeWindow) -> None:
    limiter = make_window(window_s=3600.0)  # no unit leaves the window during the test
    allowed: list[float] = []
    barrier = threading.Barrier(8)

    def client() -> None:
        barrier.wait()
        for _ in range(50):
            allowed.append(limiter.hit("u", 100))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for wait in allowed if wait == 0) == 100


def test_shared_hits_expire_from_redis_a_window_after_the_last_one(broker_url: str) -> None:
    limiter = SharedMovingWindow(events.redis_client(), window_s=1.0)
    key = f"test-expiry-{uuid.uuid4().hex}"
    limiter.hit(key, 5)
    for stored in limiter.keys(key):
        assert 0 < events.redis_client().pttl(stored) <= 1001


class Refusing:
    """A shared window whose Redis does not answer."""

    def __init__(self) -> None:
        self.calls = 0

    def hit(self, key: str, limit: int, cost: int = 1) -> float:
        self.calls += 1
        raise redis.ConnectionError("no answer")


def test_while_redis_does_not_answer_the_limit_is_counted_in_process_and_redis_retried_later(clock: Clock) -> None:
    shared, local = Refusing(), MovingWindow(window_s=1.0, clock=clock)
    limiter = FallbackWindow(shared, local, errors=(redis.RedisError,), retry_s=3600)
    assert limiter.hit("u", 1) == 0
    assert limiter.hit("u", 1) > 0  # still limited, by the process's own count
    assert shared.calls == 1  # asked once, then left alone until retry_s has passed
    limiter = FallbackWindow(shared, local, errors=(redis.RedisError,), retry_s=0)
    limiter.hit("v", 1)
    limiter.hit("v", 1)
    assert shared.calls == 3
