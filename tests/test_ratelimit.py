"""The in-process moving-window limiter behind EPOCHAL_PREDICTIONS_PER_SECOND, on a clock the test moves."""

from __future__ import annotations

import threading

import pytest

from api.ratelimit import MovingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_up_to_the_limit_fits_and_the_next_unit_waits_for_the_oldest_hit(clock: Clock) -> None:
    limiter = MovingWindow(window_s=1.0, clock=clock)
    assert limiter.hit("u", 3) == 0
    clock.now += 0.25
    assert limiter.hit("u", 3, cost=2) == 0
    clock.now += 0.25
    # 3 of 3 used: one more unit fits when the first hit, 0.5 s ago, leaves the window.
    assert limiter.hit("u", 3) == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.hit("u", 3) == 0


def test_a_refused_hit_is_not_counted_and_a_cost_waits_for_enough_units_to_leave(clock: Clock) -> None:
    limiter = MovingWindow(window_s=1.0, clock=clock)
    for _ in range(4):
        assert limiter.hit("u", 4) == 0
        clock.now += 0.1
    # Three units must leave for a cost of 3: the third hit leaves 1.0 s after it was made, at 1000.2 + 1.0.
    assert limiter.hit("u", 4, cost=3) == pytest.approx(1000.2 + 1.0 - clock.now)
    assert limiter.hit("u", 4, cost=3) > 0  # the refusal counted nothing: still the same answer
    clock.now = 1000.2 + 1.0
    assert limiter.hit("u", 4, cost=3) == 0


def test_keys_are_counted_apart(clock: Clock) -> None:
    limiter = MovingWindow(window_s=1.0, clock=clock)
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


def test_concurrent_hits_never_count_past_the_limit() -> None:
    limiter = MovingWindow(window_s=3600.0)  # no unit leaves the window during the test
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
