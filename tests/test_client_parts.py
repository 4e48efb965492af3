"""The client's and the CLI's pure parts, without a service: following, events, error mapping, the sparkline."""

from __future__ import annotations

from typing import Any, cast

import httpx
import pytest

from epochal.cli.render import metrics_table, sparkline
from epochal.client import Client
from epochal.client.errors import ApiError, InvalidRequest, RateLimited, Unauthorized, Unavailable, error_for
from epochal.client.follow import poll, stream
from epochal.client.retry import NOTHING_DONE_HEADER
from epochal.client.sse import Event, parse
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


def test_sse_parsing() -> None:
    text = (
        "retry: 2000\n\n"
        ": keep-alive\n\n"
        'id: 1-0\nevent: status\ndata: {"status": "running"}\n\n'
        'event: epoch\ndata: {"epoch":\ndata:  1}\n\n'
        "data: not json\n\n"
    )
    assert list(parse(text.split("\n"))) == [
        Event("status", {"status": "running"}, "1-0"),
        Event("epoch", {"epoch": 1}),
        Event("message", {"text": "not json"}),
    ]


def test_stream_replays_without_repeats_and_ends_on_the_final_status() -> None:
    state = {"status": "running", "epochs": [epoch(1)]}

    def read_experiment() -> Experiment:
        return experiment(str(state["status"]))

    def read_metrics() -> list[EpochMetric]:
        return cast(list[EpochMetric], state["epochs"])

    def events() -> Any:
        yield Event("status", {"status": "queued"}, "1-0")  # replayed: the experiment is already running
        yield Event("status", {"status": "running"}, "2-0")
        yield Event("epoch", {"epoch": 1, "attempt": 1, "loss": 0.5}, "3-0")  # the first read had it
        yield Event("progress", {"epoch": 2, "batch": 3, "batches": 5}, "4-0")
        yield Event("epoch", {"epoch": 2, "attempt": 1, "loss": 0.4, "experiment_id": 1}, "5-0")
        state.update(status="succeeded", epochs=[epoch(1), epoch(2), epoch(3)])  # epoch 3's event was lost
        yield Event("status", {"status": "succeeded"}, "6-0")
        raise AssertionError("read past the final status")

    got = list(stream(read_experiment, read_metrics, events()))
    assert [(e.status, [m["epoch"] for m in e.new_epochs], e.step) for e in got] == [
        ("running", [1], None),
        ("running", [], {"epoch": 2, "batch": 3, "batches": 5}),
        ("running", [2], None),
        ("succeeded", [3], None),
    ]
    assert got[2].new_epochs == [{"epoch": 2, "attempt": 1, "loss": 0.4}]
    assert [m["epoch"] for m in got[-1].epochs] == [1, 2, 3]


def test_polling_takes_over_when_the_stream_ends_early() -> None:
    reads = iter(["running", "running", "running", "succeeded"])
    state = {"status": "running"}

    def read_experiment() -> Experiment:
        state["status"] = next(reads)
        return experiment(state["status"])

    def read_metrics() -> list[EpochMetric]:
        return [epoch(1), epoch(2)] if state["status"] == "succeeded" else [epoch(1)]

    def events() -> Any:
        yield Event("epoch", {"epoch": 1, "attempt": 1}, "1-0")  # already known: nothing new
        # ... and the stream closes without a final status.

    got = list(stream(read_experiment, read_metrics, events(), 0.0))
    assert [(e.status, [m["epoch"] for m in e.new_epochs]) for e in got] == [
        ("running", [1]),
        ("succeeded", [2]),
    ]


def scripted(*answers: httpx.Response) -> tuple[Client, list[httpx.Request]]:
    """A client whose service answers `answers` in turn (the last one from then on); the requests it got."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        template = answers[min(len(sent), len(answers)) - 1]
        return httpx.Response(template.status_code, headers=template.headers, content=template.content)

    client = Client("http://service", "epk_x", transport=httpx.MockTransport(answer), max_retry_wait_s=5)
    return client, sent


OK = response(200, {"id": 1})
BUSY = {"Retry-After": "0"}  # asks to come back at once: the tests do not wait


def test_a_429_is_retried_after_its_retry_after_a_post_included() -> None:
    client, sent = scripted(response(429, {"detail": "rate limit"}, BUSY), OK)
    assert client.submit(dataset="mnist") == {"id": 1}
    assert [r.method for r in sent] == ["POST", "POST"]
    assert sent[0].content == sent[1].content  # the same body, sent again whole


def test_a_503_is_retried_for_a_get_but_a_post_only_if_the_api_says_it_did_nothing() -> None:
    client, sent = scripted(response(503, {"detail": "database down"}, BUSY), OK)
    assert client.experiment(1) == {"id": 1} and len(sent) == 2

    client, sent = scripted(response(503, {"detail": "experiments 4 were stored as failed"}, BUSY), OK)
    with pytest.raises(Unavailable) as caught:
        client.submit(dataset="mnist")
    assert len(sent) == 1 and caught.value.attempts == 1 and not caught.value.hint  # never sent twice

    client, sent = scripted(response(503, {"detail": "row busy"}, {**BUSY, NOTHING_DONE_HEADER: "true"}), OK)
    assert client.cancel(1) == {"id": 1} and len(sent) == 2


def test_no_retry_without_retry_after_and_none_past_the_bounds() -> None:
    client, sent = scripted(response(503, {"status": "degraded", "broker": {"ok": False, "detail": "x"}}))
    with pytest.raises(Unavailable):
        client.health()
    assert len(sent) == 1

    client, sent = scripted(response(429, {"detail": "rate limit"}, BUSY))
    client.max_attempts = 3
    with pytest.raises(RateLimited) as caught:
        client.experiment(1)
    assert len(sent) == 3 and caught.value.attempts == 3
    assert "gave up after 3 attempts" in str(caught.value) and "EPOCHAL_CLIENT_MAX_ATTEMPTS" in str(caught.value)

    client, sent = scripted(response(429, {"detail": "rate limit"}, {"Retry-After": "60"}))  # past the 5 s allowed
    with pytest.raises(RateLimited) as caught:
        client.experiment(1)
    assert len(sent) == 1 and "it asked for 60 s more" in str(caught.value)


def test_a_401_names_the_url_that_answered_and_how_to_point_elsewhere() -> None:
    client, _ = scripted(response(401, {"detail": "invalid API key"}))
    with pytest.raises(Unauthorized) as caught:
        client.me()
    assert caught.value.message == "invalid API key"  # the API's own words, as they are
    assert "answered by http://service" in caught.value.hint
    assert "EPOCHAL_URL" in caught.value.hint and "--url" in caught.value.hint


def test_the_metrics_table_shows_the_learning_rate_only_where_one_was_recorded() -> None:
    from rich.console import Console

    def shown(rates: list[float | None]) -> str:
        epochs = [
            {"epoch": i + 1, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7, "seconds": 1.0}
            | ({"learning_rate": rate} if rate is not None else {})
            for i, rate in enumerate(rates)
        ]
        console = Console(width=200, record=True)
        console.print(metrics_table(cast(Any, epochs)))
        return console.export_text()

    assert "learning_rate" not in shown([None, None])  # an older server, or epochs from before it was recorded
    table = shown([0.01, 0.005])
    assert "learning_rate" in table and "0.01" in table and "0.005" in table
