"""The client's and the CLI's pure parts, without a service: following, error mapping, the sparkline."""

from __future__ import annotations

from typing import Any, cast

import httpx

from epochal.cli.render import sparkline
from epochal.client.errors import ApiError, InvalidRequest, RateLimited, Unavailable, error_for
from epochal.client.follow import poll
from epochal.client.types import EpochMetric, Experiment


def experiment(status: str) -> Experiment:
    return cast(Experiment, {"id": 1, "status": status, "cancel_requested": False})


def epoch(n: int, attempt: int = 1) -> EpochMetric:
    return cast(EpochMetric, {"epoch": n, "attempt": attempt, "val_accuracy": 0.1 * n})


def test_poll_yields_at_once_then_only_changes_and_stops_at_the_end() -> None:
    # What the API shows on each read: (status, epochs so far).
    reads: list[tuple[str, list[EpochMetric]]] = [
        ("queued", []),
        ("queued", []),  # nothing new: no event
        ("running", []),
        ("running", [epoch(1)]),
        ("running", [epoch(1), epoch(2)]),
        ("running", [epoch(1), epoch(2), epoch(2, attempt=2)]),  # a resumed attempt trains epoch 2 again
        ("succeeded", [epoch(1), epoch(2), epoch(2, attempt=2), epoch(3, attempt=2)]),
    ]
    state = iter(reads)
    current: list[tuple[str, list[EpochMetric]]] = []
    slept: list[float] = []

    def read_experiment() -> Experiment:
        current[:] = [next(state)]
        return experiment(current[0][0])

    events = list(poll(read_experiment, lambda: current[0][1], 0.5, sleep=slept.append))
    assert [e.status for e in events] == ["queued", "running", "running", "running", "running", "succeeded"]
    assert [[(m["attempt"], m["epoch"]) for m in e.new_epochs] for e in events] == [
        [],
        [],
        [(1, 1)],
        [(1, 2)],
        [(2, 2)],
        [(2, 3)],
    ]
    assert events[-1].finished and len(events[-1].epochs) == 4
    assert slept == [0.5] * (len(reads) - 1)  # no sleep after the last read


def response(status: int, body: Any = None, headers: dict[str, str] | None = None, text: str = "") -> httpx.Response:
    request = httpx.Request("GET", "http://service/x")
    if body is not None:
        return httpx.Response(status, json=body, headers=headers, request=request)
    return httpx.Response(status, text=text, headers=headers, request=request)


def test_error_messages_are_the_apis_own() -> None:
    invalid = error_for(response(422, {"message": "epochs: too small", "detail": [{"loc": ["body", "epochs"]}]}))
    assert isinstance(invalid, InvalidRequest) and invalid.message == "epochs: too small"
    limited = error_for(response(429, {"detail": "quota: slow down"}, {"Retry-After": "60"}))
    assert isinstance(limited, RateLimited) and (limited.retry_after, limited.message) == (60.0, "quota: slow down")
    degraded = {"status": "degraded", "database": {"ok": True, "detail": "ok"}, "broker": {"ok": False, "detail": "x"}}
    down = error_for(response(503, degraded))
    assert isinstance(down, Unavailable) and down.retry_after is None and down.message == "broker: x"
    proxy = error_for(response(502, text="Bad gateway from the proxy"))
    assert type(proxy) is ApiError and (proxy.status, proxy.message) == (502, "Bad gateway from the proxy")
    assert str(proxy) == "502: Bad gateway from the proxy"


def test_sparkline_spans_the_range() -> None:
    assert sparkline([0.1, 0.5, 0.9]) == "▁▅█"
    assert sparkline([None, 0.3, 0.3]) == " ▁▁"
    assert sparkline([]) == ""
