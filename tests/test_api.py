"""The HTTP API, in-process, on the real database and broker.

Submitted experiments go to a queue no worker consumes, so they stay queued; the worker's own
database functions (worker.jobs) move them to running, succeeded, failed or cancelled.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from config import TRAIN_TASK_NAME, get_settings
from domain.lifecycle import Status
from epochal.broker import socket_path_of
from tests.support import counted_work, release_waiting
from training.datafiles import in_data_dir
from training.results import CHECKPOINT_NAME, EpochResult, EvaluationResult
from training.spec import (
    DATASETS,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    Activation,
    Dataset,
    Loss,
    Optimizer,
)
from worker import jobs

WORKER_NAME = "api-test-worker@host"
FINISHED_STATES = [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED]


# --- helpers -----------------------------------------------------------------------------------------


def submit(client: TestClient, **fields: Any) -> dict[str, Any]:
    """POST an experiment (mnist unless told otherwise) and return the accepted body."""
    response = client.post("/experiments", json={"dataset": "mnist", **fields})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def read(client: TestClient, experiment_id: int) -> dict[str, Any]:
    response = client.get(f"/experiments/{experiment_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def total_experiments(client: TestClient) -> int:
    response = client.get("/experiments")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def epoch_result(epoch: int, offset: float = 0.0) -> EpochResult:
    """A distinct, recognisable row per epoch."""
    return EpochResult(
        epoch=epoch,
        loss=1.0 / epoch + offset,
        accuracy=0.5 + epoch / 100 + offset,
        val_loss=1.5 / epoch + offset,
        val_accuracy=0.45 + epoch / 100 + offset,
        seconds=2.0 + epoch / 10,
    )


def evaluation_for(dataset: str) -> EvaluationResult:
    """An evaluation shaped like the real one: labels, an n x n matrix, sklearn's report layout."""
    labels = list(DATASETS[Dataset(dataset)].class_names)
    n = len(labels)
    matrix = [[(7 * i + 3 * j) % 11 + (20 if i == j else 0) for j in range(n)] for i in range(n)]
    report: dict[str, Any] = {
        label: {"precision": 0.8 + i / 100, "recall": 0.7 + i / 100, "f1-score": 0.75, "support": sum(matrix[i])}
        for i, label in enumerate(labels)
    }
    report["accuracy"] = 0.8125
    report["macro avg"] = {"precision": 0.81, "recall": 0.71, "f1-score": 0.75, "support": 1000}
    report["weighted avg"] = {"precision": 0.82, "recall": 0.72, "f1-score": 0.76, "support": 1000}
    return EvaluationResult(
        test_loss=0.4321, test_accuracy=0.8125, labels=labels, confusion_matrix=matrix, classification_report=report
    )


def run_to_success(
    client: TestClient,
    tmp_path: Path,
    *,
    epochs: int = 2,
    best_val_accuracy: float = 0.9,
    checkpoint: bytes = b"\x89HDF\r\n\x1a\n not a real network, nothing loads it",
    **fields: Any,
) -> tuple[int, EvaluationResult, bytes]:
    """Submit an experiment and take it through claim, epochs and finish_succeeded as a worker would."""
    experiment_id = submit(client, epochs=epochs, **fields)["id"]
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    spec = job.spec
    for epoch in range(1, epochs + 1):
        jobs.record_epoch(job, epoch_result(epoch))
    evaluation = evaluation_for(spec.dataset)
    path = tmp_path / f"checkpoint-{experiment_id}.h5"
    path.write_bytes(checkpoint)
    jobs.finish_succeeded(job, epochs, best_val_accuracy, evaluation, path)
    return experiment_id, evaluation, checkpoint


def put_in_state(client: TestClient, tmp_path: Path, state: Status, **fields: Any) -> int:
    """An experiment in `state`, reached the way the service reaches it."""
    if state is Status.SUCCEEDED:
        return run_to_success(client, tmp_path, **fields)[0]
    experiment_id = int(submit(client, **fields)["id"])
    if state is Status.QUEUED:
        return experiment_id
    if state is Status.CANCELLED:
        assert client.post(f"/experiments/{experiment_id}/cancel").status_code == 200
        return experiment_id
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    if state is Status.FAILED:
        jobs.finish_failed(job, "RuntimeError: out of memory")
    return experiment_id


def broker_queue(name: str) -> list[dict[str, Any]]:
    """The Celery messages waiting on queue `name` in the test broker, newest first."""
    url = get_settings().broker_url
    socket_path = socket_path_of(url)
    connection = redis.Redis(unix_socket_path=str(socket_path)) if socket_path else redis.Redis.from_url(url)
    return [json.loads(raw) for raw in connection.lrange(name, 0, -1)]


def task_args(message: dict[str, Any]) -> list[Any]:
    assert message["headers"]["task"] == TRAIN_TASK_NAME
    body = base64.b64decode(message["body"]) if message["properties"].get("body_encoding") == "base64" else None
    assert body is not None
    args: list[Any] = json.loads(body)[0]
    return args


def assert_unprocessable(response: Any, *words: str) -> str:
    """A 422 in the app's shape, whose readable message contains every one of `words`."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert isinstance(body["detail"], list)
    assert body["detail"], body
    assert all("loc" in error and "msg" in error for error in body["detail"])
    message: str = body["message"]
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


# --- POST /experiments ---------------------------------------------------------------------------------


def test_submit_answers_202_with_location_and_resolved_defaults(client: TestClient) -> None:
    before = broker_queue(get_settings().default_queue)
    response = client.post("/experiments", json={"dataset": "mnist"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/experiments/{body['id']}"
    assert body["status"] == "queued"
    assert body["network"] == "mlp"
    assert body["head"] == {"units": DATASETS[Dataset.MNIST].num_classes, "activation": "softmax"}
    assert body["head"]["units"] == 10
    assert body["loss"] == Loss.SPARSE_CATEGORICAL_CROSSENTROPY
    assert body["optimizer"] == Optimizer.ADAM
    assert body["queue"] == get_settings().default_queue == "api-tests"
    assert body["cancel_requested"] is False
    assert body["summary"]["epochs_done"] == 0
    assert body["started_at"] is None and body["finished_at"] is None
    # The Location answers with the same experiment, and where it stands in its queue.
    read_back = client.get(response.headers["location"]).json()
    assert (read_back.pop("queue_position"), body.pop("queue_position")) == (1, None)
    read_back.pop("estimated_start"), body.pop("estimated_start")
    assert read_back == body
    # It waits for the dispatcher, which releases it to the broker carrying the experiment id.
    assert len(broker_queue(body["queue"])) == len(before)
    assert release_waiting() == [body["id"]]
    after = broker_queue(body["queue"])
    assert len(after) == len(before) + 1
    assert task_args(after[0]) == [body["id"]]


@pytest.mark.parametrize(
    "fields",
    [
        {"dataset": "mnist"},
        {
            "name": "every field, ünïcode",
            "dataset": "cats_vs_dogs",
            "optimizer": "sgd_nesterov",
            "learning_rate": 0.1 + 0.2,  # a float whose shortest repr has 17 digits
            "head": {"units": 1, "activation": "sigmoid"},
            "epochs": 2,
            "batch_size": 20,
            "train_size": 300,
            "validation": "test",
            "seed": 123,
            "deterministic": True,
            "jit_compile": False,
            "queue": "gpu-api-tests.1",
        },
        {"dataset": "mnist", "repeats": 3, "validation_split": 0.25},
    ],
)
def test_the_submit_answer_is_byte_for_byte_the_experiment_read_back(
    client: TestClient, fields: dict[str, Any]
) -> None:
    # The 202 is built from the row in memory, not read back: it must be exactly what a GET then answers, but for
    # where the job stands in its queue, which a read works out (the submission does not pay for it).
    response = client.post("/experiments", json=fields)
    assert response.status_code == 202, response.text
    read_back = client.get(response.headers["location"])
    assert read_back.status_code == 200
    standing = b'"queue_position":null,"estimated_start":null'
    assert standing in response.content
    position = read_back.json()["queue_position"]
    assert isinstance(position, int) and position >= 1
    answered = read_back.content.replace(f'"queue_position":{position},'.encode(), b'"queue_position":null,')
    assert response.content == answered


def test_a_submission_is_one_connection_and_no_read_after_the_insert(client: TestClient) -> None:
    from sqlalchemy import event

    from models.db import get_engine

    # A key's first use records it (a commit of its own, at most once a minute): not what is measured here.
    client.get("/experiments")
    engine, statements, checkouts = get_engine(), [], []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement.split()[0].upper())

    def checked_out(*_args: object) -> None:
        checkouts.append(1)

    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine.pool, "checkout", checked_out)
    try:
        submit(client)
    finally:
        event.remove(engine, "before_cursor_execute", record)
        event.remove(engine.pool, "checkout", checked_out)
    # The key (with its user), the insert, then the quota's lock and count; the answer reads nothing back.
    assert statements == ["SELECT", "INSERT", "UPDATE", "SELECT"], statements
    assert len(checkouts) == 1


def test_a_submission_is_one_hop_to_a_thread(client: TestClient) -> None:
    client.get("/experiments")  # the key's first use, recorded once
    with counted_work() as work:
        submit(client)
    # The key, the quota, the insert, the publish and the answer in one worker-thread hop: no sync dependency
    # (settings, session, caller), no sync handler, no answer validated in a thread of its own.
    assert work.hops == ["verified_then_work"], work.hops


def test_a_sweep_is_one_hop_to_a_thread(client: TestClient) -> None:
    client.get("/sweeps")
    with counted_work() as work:
        response = client.post("/sweeps", json={"base": {"dataset": "mnist"}, "grid": {"optimizer": ["adam", "sgd"]}})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/sweeps/{response.json()['id']}"
    assert work.hops == ["verified_then_work"], work.hops


def test_submit_to_a_named_queue(client: TestClient) -> None:
    queue = "gpu-api-tests.1"
    before = broker_queue(queue)
    body = submit(client, queue=queue)
    assert body["queue"] == queue
    assert read(client, body["id"])["queue"] == queue
    assert release_waiting() == [body["id"]]
    after = broker_queue(queue)
    assert len(after) == len(before) + 1
    assert task_args(after[0]) == [body["id"]]


def test_a_queue_no_worker_serves_is_refused_naming_the_known_ones(client: TestClient) -> None:
    before = client.get("/experiments").json()["total"]
    response = client.post("/experiments", json={"dataset": "mnist", "queue": "gpuu"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'gpuu' is not served" in detail
    assert "'api-tests'" in detail and "'gpu-api-tests.1'" in detail
    assert client.get("/experiments").json()["total"] == before  # nothing was stored


def test_submit_stores_every_field_it_was_given(client: TestClient) -> None:
    fields: dict[str, Any] = {
        "name": "cats, one sigmoid unit",
        "dataset": "cats_vs_dogs",
        "optimizer": "rmsprop",
        "learning_rate": 0.0001,
        "head": {"units": 1, "activation": "sigmoid"},
        "epochs": 7,
        "batch_size": 20,
        "train_size": 500,
        "validation_split": 0.2,
        "seed": 7,
        "mixed_precision": True,
    }
    body = submit(client, **fields)
    stored = read(client, body["id"])
    for key, value in fields.items():
        assert stored[key] == value, key
    assert stored["network"] == "convnet"
    # A 1-unit head defaults to binary cross-entropy.
    assert stored["loss"] == Loss.BINARY_CROSSENTROPY


@pytest.mark.parametrize(("units", "activation", "loss"), [(1, "relu", "mse"), (2, "softmax", "mse")])
def test_the_homeworks_bad_configurations_are_accepted(
    client: TestClient, units: int, activation: str, loss: str
) -> None:
    body = submit(client, dataset="cats_vs_dogs", head={"units": units, "activation": activation}, loss=loss)
    assert body["status"] == "queued"
    stored = read(client, body["id"])
    assert stored["head"] == {"units": units, "activation": activation}
    assert stored["loss"] == loss


def _values(enum: Any) -> tuple[str, ...]:
    return tuple(str(member.value) for member in enum)


INVALID_SUBMISSIONS: list[Any] = [
    pytest.param({"dataset": "CIFAR 10"}, ("dataset", "names no dataset", *_values(Dataset)), id="unknown-dataset"),
    pytest.param({"optimizer": "lbfgs"}, ("optimizer", *_values(Optimizer)), id="unknown-optimizer"),
    pytest.param({"loss": "hinge"}, ("loss", *_values(Loss)), id="unknown-loss"),
    pytest.param(
        {"head": {"units": 10, "activation": "tanh"}},
        ("head.activation", *_values(Activation)),
        id="unknown-activation",
    ),
    pytest.param({"epochs": 0}, ("epochs", "greater than or equal to 1"), id="epochs-0"),
    pytest.param({"epochs": MAX_EPOCHS + 1}, ("epochs", f"less than or equal to {MAX_EPOCHS}"), id="epochs-over-max"),
    pytest.param({"batch_size": 0}, ("batch_size", "greater than or equal to 1"), id="batch-size-0"),
    pytest.param(
        {"batch_size": MAX_BATCH_SIZE + 1},
        ("batch_size", f"less than or equal to {MAX_BATCH_SIZE}"),
        id="batch-size-over-max",
    ),
    pytest.param({"learning_rate": 0}, ("learning_rate", "finite number > 0", "0.001"), id="learning-rate-0"),
    pytest.param({"learning_rate": -0.01}, ("learning_rate", "finite number > 0"), id="learning-rate-negative"),
    pytest.param({"learning_rate": "NaN"}, ("learning_rate", "finite number > 0"), id="learning-rate-nan"),
    pytest.param({"learning_rate": "inf"}, ("learning_rate", "finite number > 0"), id="learning-rate-inf"),
    pytest.param({"learning_rate": "-inf"}, ("learning_rate", "finite number > 0"), id="learning-rate-minus-inf"),
    pytest.param(
        {"head": {"units": 1, "activation": "sigmoid"}},
        ("head.units", "must be 10", "mnist"),
        id="mnist-one-unit",
    ),
    pytest.param(
        {"dataset": "cats_vs_dogs", "head": {"units": 3, "activation": "softmax"}},
        ("head.units", "1 or 2", "cats_vs_dogs"),
        id="binary-three-units",
    ),
    pytest.param(
        {"dataset": "fashion_mnist", "head": {"units": 2, "activation": "softmax"}},
        ("head.units", "must be 10", "fashion_mnist"),
        id="fashion-two-units",
    ),
    pytest.param(
        {
            "dataset": "cats_vs_dogs",
            "head": {"units": 1, "activation": "sigmoid"},
            "loss": "sparse_categorical_crossentropy",
        },
        ("sparse_categorical_crossentropy", "head.units 1", "binary_crossentropy"),
        id="sparse-loss-one-unit",
    ),
    pytest.param({"bogus": 1}, ("bogus: unknown field; remove it",), id="unknown-field"),
    pytest.param(
        {"head": {"units": 10, "activation": "softmax", "bias": True}}, ("head.bias",), id="unknown-head-field"
    ),
    pytest.param({"network": "convnet"}, ("convnet", "use network 'mlp'"), id="convnet-on-mnist"),
    pytest.param({"network": "resnet"}, ("network",), id="unknown-network"),
    pytest.param({"queue": "gpu queue"}, ("queue", "pattern"), id="queue-with-a-space"),
    pytest.param({"queue": "q" * 101}, ("queue", "at most 100"), id="queue-too-long"),
    pytest.param({"validation_split": 1}, ("validation_split", "less than 1"), id="validation-split-1"),
]


@pytest.mark.parametrize(("fields", "words"), INVALID_SUBMISSIONS)
def test_invalid_submissions_answer_422_naming_the_field_and_store_nothing(
    client: TestClient, fields: dict[str, Any], words: tuple[str, ...]
) -> None:
    before = len(broker_queue(get_settings().default_queue))
    response = client.post("/experiments", json={"dataset": "mnist", **fields})
    assert_unprocessable(response, *words)
    assert total_experiments(client) == 0
    assert len(broker_queue(get_settings().default_queue)) == before


def test_422_for_a_missing_dataset_and_for_a_body_that_is_not_json(client: TestClient) -> None:
    assert_unprocessable(client.post("/experiments", json={}), "dataset", "Field required")
    not_json = client.post("/experiments", content=b"{dataset: mnist", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    assert "message" in not_json.json()
    assert total_experiments(client) == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"dataset": "mnist", "learning_rate": NaN}', "learning_rate"),
        (b'{"dataset": "mnist", "learning_rate": Infinity}', "learning_rate"),
        (b'{"dataset": "mnist", "validation_split": NaN}', "validation_split"),
        (b'{"dataset": "mnist", "epochs": -Infinity}', "epochs"),
    ],
)
def test_non_finite_json_literals_answer_422_not_500(client: TestClient, raw: bytes, field: str) -> None:
    # Python's JSON parser accepts NaN and Infinity (and json.dumps writes them): the 422 must still render.
    response = client.post("/experiments", content=raw, headers={"content-type": "application/json"})
    assert_unprocessable(response, field)
    assert total_experiments(client) == 0


# --- GET /experiments ----------------------------------------------------------------------------------


def test_list_is_newest_first_with_total(client: TestClient) -> None:
    ids = [submit(client, seed=seed)["id"] for seed in range(3)]
    page = client.get("/experiments").json()
    assert [item["id"] for item in page["items"]] == sorted(ids, reverse=True)
    assert [item["seed"] for item in page["items"]] == [2, 1, 0]
    assert page["total"] == 3
    assert (page["limit"], page["offset"]) == (50, 0)


def test_list_of_nothing(client: TestClient) -> None:
    assert client.get("/experiments").json() == {"items": [], "total": 0, "limit": 50, "offset": 0}


def test_list_filters_by_status_dataset_and_optimizer(client: TestClient, tmp_path: Path) -> None:
    queued_mnist = put_in_state(client, tmp_path, Status.QUEUED, optimizer="adam")
    running_mnist = put_in_state(client, tmp_path, Status.RUNNING, optimizer="sgd")
    queued_fashion = put_in_state(client, tmp_path, Status.QUEUED, dataset="fashion_mnist", optimizer="adam")
    cancelled_cats = put_in_state(client, tmp_path, Status.CANCELLED, dataset="cats_vs_dogs", optimizer="rmsprop")
    succeeded_cats = put_in_state(client, tmp_path, Status.SUCCEEDED, dataset="cats_vs_dogs", optimizer="sgd")

    def ids(**params: str) -> tuple[list[int], int]:
        response = client.get("/experiments", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        return [item["id"] for item in page["items"]], page["total"]

    assert ids(status="queued") == ([queued_fashion, queued_mnist], 2)
    assert ids(status="running") == ([running_mnist], 1)
    assert ids(status="cancelled") == ([cancelled_cats], 1)
    assert ids(status="succeeded") == ([succeeded_cats], 1)
    assert ids(status="failed") == ([], 0)
    assert ids(dataset="mnist") == ([running_mnist, queued_mnist], 2)
    assert ids(dataset="cats_vs_dogs") == ([succeeded_cats, cancelled_cats], 2)
    assert ids(optimizer="sgd") == ([succeeded_cats, running_mnist], 2)
    assert ids(optimizer="adagrad") == ([], 0)
    assert ids(status="queued", dataset="mnist") == ([queued_mnist], 1)
    assert ids(dataset="cats_vs_dogs", optimizer="rmsprop") == ([cancelled_cats], 1)
    # Every item a filter returns really matches it.
    for item in client.get("/experiments", params={"status": "queued"}).json()["items"]:
        assert item["status"] == "queued"


def test_list_pagination(client: TestClient) -> None:
    ids = sorted((submit(client, seed=seed)["id"] for seed in range(5)), reverse=True)
    page = client.get("/experiments", params={"limit": 2, "offset": 1}).json()
    assert [item["id"] for item in page["items"]] == ids[1:3]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    last = client.get("/experiments", params={"limit": 2, "offset": 4}).json()
    assert [item["id"] for item in last["items"]] == ids[4:]
    beyond = client.get("/experiments", params={"limit": 2, "offset": 10}).json()
    assert beyond["items"] == [] and beyond["total"] == 5
    # Walking the pages visits every experiment once, in order.
    walked: list[int] = []
    for offset in range(0, 5, 2):
        walked += [
            item["id"] for item in client.get("/experiments", params={"limit": 2, "offset": offset}).json()["items"]
        ]
    assert walked == ids


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": 0}, ("limit", "greater than or equal to 1")),
        ({"limit": 501}, ("limit", "less than or equal to 500")),
        ({"offset": -1}, ("offset",)),
        ({"status": "done"}, ("status", *_values(Status))),
        ({"dataset": "CIFAR 10"}, ("dataset",)),
        ({"optimizer": "lbfgs"}, ("optimizer",)),
    ],
)
def test_list_rejects_bad_query_parameters(client: TestClient, params: dict[str, Any], words: tuple[str, ...]) -> None:
    assert_unprocessable(client.get("/experiments", params=params), *words)


# --- GET /experiments/{id} and /metrics ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/experiments/{id}"),
        ("GET", "/experiments/{id}/metrics"),
        ("GET", "/experiments/{id}/evaluation"),
        ("GET", "/experiments/{id}/confusion-matrix"),
        ("GET", "/experiments/{id}/artifacts"),
        ("GET", "/experiments/{id}/artifacts/" + CHECKPOINT_NAME),
        ("POST", "/experiments/{id}/cancel"),
    ],
)
def test_a_missing_experiment_is_404_with_a_message(client: TestClient, method: str, path: str) -> None:
    existing = submit(client)["id"]
    missing = existing + 1000
    response = client.request(method, path.format(id=missing))
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert f"experiment {missing} does not exist" in detail
    assert "GET /experiments" in detail


def test_an_id_that_is_not_a_number_is_422(client: TestClient) -> None:
    assert_unprocessable(client.get("/experiments/abc"), "experiment_id")


def test_metrics_of_a_queued_experiment_are_empty(client: TestClient) -> None:
    experiment_id = submit(client)["id"]
    response = client.get(f"/experiments/{experiment_id}/metrics")
    assert response.status_code == 200
    assert response.json() == []


def test_metrics_come_back_in_epoch_order_with_every_field(client: TestClient) -> None:
    experiment_id = submit(client, epochs=3)["id"]
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    written = [epoch_result(3), epoch_result(1), epoch_result(2)]
    for result in written:
        jobs.record_epoch(job, result)
    metrics = client.get(f"/experiments/{experiment_id}/metrics").json()
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    for row, expected in zip(metrics, sorted(written, key=lambda r: r.epoch), strict=True):
        assert row == {
            "epoch": expected.epoch,
            "loss": pytest.approx(expected.loss),
            "accuracy": pytest.approx(expected.accuracy),
            "val_loss": pytest.approx(expected.val_loss),
            "val_accuracy": pytest.approx(expected.val_accuracy),
            "seconds": pytest.approx(expected.seconds),
            "learning_rate": None,  # epoch_result() records none
            "attempt": 1,
        }
    experiment = read(client, experiment_id)
    assert experiment["summary"]["epochs_done"] == 3
    assert experiment["status"] == "running"
    assert experiment["worker"] == WORKER_NAME
    assert experiment["started_at"] is not None


def test_recording_an_epoch_twice_keeps_one_row(client: TestClient) -> None:
    experiment_id = submit(client, epochs=2)["id"]
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    jobs.record_epoch(job, epoch_result(1))
    jobs.record_epoch(job, epoch_result(1, offset=0.25))  # a redelivered job reaching epoch 1 again
    jobs.record_epoch(job, epoch_result(2))
    metrics = client.get(f"/experiments/{experiment_id}/metrics").json()
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[0]["loss"] == pytest.approx(epoch_result(1).loss)  # the first write stands
    assert read(client, experiment_id)["summary"]["epochs_done"] == 2


def test_a_failed_experiment_keeps_its_error_and_finished_epochs(client: TestClient) -> None:
    experiment_id = submit(client, epochs=5)["id"]
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    jobs.record_epoch(job, epoch_result(1))
    jobs.record_epoch(job, epoch_result(2))
    error = "ResourceExhaustedError: OOM when allocating tensor with shape [32,148,148,32]"
    jobs.finish_failed(job, error)
    experiment = read(client, experiment_id)
    assert experiment["status"] == "failed"
    assert experiment["error"] == error
    assert experiment["finished_at"] is not None
    assert experiment["summary"]["epochs_done"] == 2
    metrics = client.get(f"/experiments/{experiment_id}/metrics").json()
    assert [m["epoch"] for m in metrics] == [1, 2]
    no_evaluation = client.get(f"/experiments/{experiment_id}/evaluation")
    assert no_evaluation.status_code == 404
    assert "failed" in no_evaluation.json()["detail"]
    assert client.get(f"/experiments/{experiment_id}/artifacts").json() == []


def test_timestamps_are_utc_and_ordered(client: TestClient, tmp_path: Path) -> None:
    experiment_id, _, _ = run_to_success(client, tmp_path)
    experiment = read(client, experiment_id)
    stamps = [datetime.fromisoformat(experiment[key]) for key in ("created_at", "started_at", "finished_at")]
    assert all(stamp.utcoffset() == timedelta(0) for stamp in stamps), stamps
    assert stamps == sorted(stamps)
    [artifact] = client.get(f"/experiments/{experiment_id}/artifacts").json()
    assert datetime.fromisoformat(artifact["created_at"]).utcoffset() == timedelta(0)
    # The submit answer and a later read agree on the time it was created.
    submitted = submit(client)
    assert read(client, submitted["id"])["created_at"] == submitted["created_at"]


# --- GET /experiments/{id}/evaluation and /confusion-matrix -------------------------------------------


@pytest.mark.parametrize("endpoint", ["evaluation", "confusion-matrix"])
def test_no_evaluation_while_queued_or_running(client: TestClient, endpoint: str) -> None:
    experiment_id = submit(client)["id"]
    queued = client.get(f"/experiments/{experiment_id}/{endpoint}")
    assert queued.status_code == 404
    detail = queued.json()["detail"]
    assert isinstance(detail, str)
    assert f"experiment {experiment_id} has no evaluation" in detail
    assert "queued" in detail
    assert jobs.claim(experiment_id, WORKER_NAME) is not None
    running = client.get(f"/experiments/{experiment_id}/{endpoint}")
    assert running.status_code == 404
    assert "running" in running.json()["detail"]


def test_a_succeeded_experiment_serves_its_stored_evaluation(client: TestClient, tmp_path: Path) -> None:
    experiment_id, evaluation, _ = run_to_success(client, tmp_path, epochs=3, best_val_accuracy=0.875)

    response = client.get(f"/experiments/{experiment_id}/evaluation")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["experiment_id"] == experiment_id
    assert body["test_loss"] == pytest.approx(evaluation.test_loss)
    assert body["test_accuracy"] == pytest.approx(evaluation.test_accuracy)
    assert body["confusion_matrix"] == {"labels": evaluation.labels, "matrix": evaluation.confusion_matrix}
    assert body["classification_report"] == evaluation.classification_report

    matrix = client.get(f"/experiments/{experiment_id}/confusion-matrix")
    assert matrix.status_code == 200
    assert matrix.json() == {"labels": evaluation.labels, "matrix": evaluation.confusion_matrix}
    assert matrix.json()["labels"] == list(DATASETS[Dataset.MNIST].class_names)

    experiment = read(client, experiment_id)
    assert experiment["status"] == "succeeded"
    assert experiment["finished_at"] is not None
    assert experiment["summary"] == {
        "epochs_done": 3,
        "best_epoch": 3,
        "best_val_accuracy": pytest.approx(0.875),
        "test_loss": pytest.approx(evaluation.test_loss),
        "test_accuracy": pytest.approx(evaluation.test_accuracy),
        "stopped_early_at": None,  # no early stopping asked for
    }


def test_a_binary_evaluation_keeps_the_dataset_labels(client: TestClient, tmp_path: Path) -> None:
    experiment_id, evaluation, _ = run_to_success(
        client, tmp_path, dataset="cats_vs_dogs", head={"units": 1, "activation": "sigmoid"}
    )
    matrix = client.get(f"/experiments/{experiment_id}/confusion-matrix").json()
    assert matrix["labels"] == ["cat", "dog"] == evaluation.labels
    assert len(matrix["matrix"]) == 2 and all(len(row) == 2 for row in matrix["matrix"])


# --- Artifacts -----------------------------------------------------------------------------------------


def test_a_queued_experiment_has_no_artifacts(client: TestClient) -> None:
    experiment_id = submit(client)["id"]
    assert client.get(f"/experiments/{experiment_id}/artifacts").json() == []
    response = client.get(f"/experiments/{experiment_id}/artifacts/{CHECKPOINT_NAME}")
    assert response.status_code == 404
    assert "queued" in response.json()["detail"]


def test_list_and_download_the_checkpoint(client: TestClient, tmp_path: Path) -> None:
    content = bytes(range(256)) * 40 + b"end"
    experiment_id, _, _ = run_to_success(client, tmp_path, checkpoint=content)

    listed = client.get(f"/experiments/{experiment_id}/artifacts")
    assert listed.status_code == 200
    [artifact] = listed.json()
    assert artifact["name"] == CHECKPOINT_NAME
    assert artifact["media_type"] == jobs.H5_MEDIA_TYPE
    assert artifact["size"] == len(content)
    assert artifact["sha256"] == hashlib.sha256(content).hexdigest()
    assert artifact["url"] == f"/experiments/{experiment_id}/artifacts/{CHECKPOINT_NAME}"

    download = client.get(artifact["url"])
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["content-type"].startswith(jobs.H5_MEDIA_TYPE)
    assert download.headers["content-disposition"] == f'attachment; filename="{CHECKPOINT_NAME}"'
    assert download.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert int(download.headers["content-length"]) == len(content)


def test_an_unknown_artifact_is_404_with_a_message(client: TestClient, tmp_path: Path) -> None:
    experiment_id, _, _ = run_to_success(client, tmp_path)
    response = client.get(f"/experiments/{experiment_id}/artifacts/weights.bin")
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "weights.bin" in detail
    assert f"GET /experiments/{experiment_id}/artifacts" in detail


def test_artifacts_belong_to_their_own_experiment(client: TestClient, tmp_path: Path) -> None:
    first, _, first_content = run_to_success(client, tmp_path, checkpoint=b"first checkpoint")
    second, _, second_content = run_to_success(client, tmp_path, checkpoint=b"second, a longer checkpoint")
    assert client.get(f"/experiments/{first}/artifacts/{CHECKPOINT_NAME}").content == first_content
    assert client.get(f"/experiments/{second}/artifacts/{CHECKPOINT_NAME}").content == second_content


# --- POST /experiments/{id}/cancel ---------------------------------------------------------------------


def test_cancelling_a_queued_experiment_means_it_never_starts(client: TestClient) -> None:
    experiment_id = submit(client)["id"]
    response = client.post(f"/experiments/{experiment_id}/cancel")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == experiment_id
    assert body["status"] == "cancelled"
    assert body["cancel_requested"] is True
    assert body["finished_at"] is not None
    # The job is still on the broker; the worker that takes it finds nothing to claim.
    assert jobs.claim(experiment_id, WORKER_NAME) is None
    after = read(client, experiment_id)
    assert after["status"] == "cancelled"
    assert after["worker"] is None
    assert after["started_at"] is None


def test_cancelling_a_running_experiment_flags_it_for_the_worker(client: TestClient) -> None:
    experiment_id = submit(client)["id"]
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    assert jobs.cancel_requested(experiment_id) is False
    response = client.post(f"/experiments/{experiment_id}/cancel")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "running"  # it stops at the end of its current epoch
    assert body["cancel_requested"] is True
    assert body["finished_at"] is None
    assert jobs.cancel_requested(experiment_id) is True
    # Asking twice is harmless while it still runs.
    assert client.post(f"/experiments/{experiment_id}/cancel").status_code == 200
    # The worker then stops, and the experiment ends cancelled.
    jobs.record_epoch(job, epoch_result(1))
    jobs.finish_cancelled(job, best_epoch=1, best_val_accuracy=epoch_result(1).val_accuracy)
    finished = read(client, experiment_id)
    assert finished["status"] == "cancelled"
    assert finished["summary"]["epochs_done"] == 1
    assert finished["summary"]["best_epoch"] == 1


def test_cancel_leaves_other_experiments_alone(client: TestClient) -> None:
    cancelled = submit(client)["id"]
    untouched = submit(client)["id"]
    assert client.post(f"/experiments/{cancelled}/cancel").status_code == 200
    other = read(client, untouched)
    assert (other["status"], other["cancel_requested"]) == ("queued", False)


@pytest.mark.parametrize("state", FINISHED_STATES)
def test_cancelling_a_finished_experiment_is_409(client: TestClient, tmp_path: Path, state: Status) -> None:
    experiment_id = put_in_state(client, tmp_path, state)
    before = read(client, experiment_id)
    assert before["status"] == state
    response = client.post(f"/experiments/{experiment_id}/cancel")
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert f"already finished ({state})" in detail
    after = read(client, experiment_id)
    assert after["status"] == state
    assert after["cancel_requested"] == before["cancel_requested"]
    assert after["finished_at"] == before["finished_at"]


# --- Predictions ---------------------------------------------------------------------------------------


def test_predicting_with_an_experiment_that_has_not_succeeded_is_409(client: TestClient) -> None:
    experiment_id = submit(client)["id"]
    response = client.post(
        f"/experiments/{experiment_id}/predictions", files={"file": ("digit.png", b"\x89PNG not read", "image/png")}
    )
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert f"experiment {experiment_id} is queued" in detail
    assert "succeeded" in detail


def test_predicting_with_a_missing_experiment_is_404(client: TestClient) -> None:
    response = client.post("/experiments/12345/predictions", files={"file": ("a.png", b"x", "image/png")})
    assert response.status_code == 404
    assert "does not exist" in response.json()["detail"]


def test_predicting_without_a_file_is_422(client: TestClient) -> None:
    experiment_id = submit(client)["id"]
    assert_unprocessable(client.post(f"/experiments/{experiment_id}/predictions"), "file")


def test_dataset_predictions_need_a_succeeded_experiment_on_that_dataset(client: TestClient, tmp_path: Path) -> None:
    # A queued mnist experiment and a succeeded one on another dataset do not count.
    submit(client)
    run_to_success(client, tmp_path, dataset="cats_vs_dogs")
    response = client.post("/datasets/mnist/predictions", files={"file": ("digit.png", b"x", "image/png")})
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert "no succeeded experiment on mnist" in detail
    assert "POST /experiments" in detail


def test_the_default_prediction_rate_lets_a_loop_over_a_test_set_through(client: TestClient) -> None:
    # A client looping over test images as fast as it can must not be stopped by the default limit (it guards
    # against floods): 900 predictions, sent as 60-image batches within about a second (each image counts), are
    # answered as if nothing were limited. Nothing is trained, so each batch is a 404, counted like any answer.
    files = [("files", (f"{i}.png", b"x", "image/png")) for i in range(60)]
    answers = [client.post("/datasets/mnist/predictions/batch", files=files).status_code for _ in range(15)]
    assert answers == [404] * 15, answers


def test_dataset_predictions_on_an_unknown_dataset_are_404_and_on_no_dataset_name_422(client: TestClient) -> None:
    response = client.post("/datasets/cifar/predictions", files={"file": ("a.png", b"x", "image/png")})
    assert response.status_code == 404 and "GET /datasets lists" in response.json()["detail"]
    response = client.post("/datasets/CIFAR!/predictions", files={"file": ("a.png", b"x", "image/png")})
    assert_unprocessable(response, "dataset")


def test_a_spec_on_an_unknown_dataset_is_a_404_and_stores_nothing(client: TestClient) -> None:
    before = client.get("/experiments").json()["total"]
    response = client.post("/experiments", json={"dataset": "cifar"})
    assert response.status_code == 404 and "dataset 'cifar' does not exist" in response.json()["detail"]
    assert client.get("/experiments").json()["total"] == before


# --- GET /datasets -------------------------------------------------------------------------------------


def test_datasets_lists_every_dataset_with_its_classes(client: TestClient, data_dir: Path) -> None:
    response = client.get("/datasets")
    assert response.status_code == 200
    by_name = {d["name"]: d for d in response.json()}
    assert set(by_name) == {"mnist", "fashion_mnist", "cats_vs_dogs"} == set(_values(Dataset))
    for name, info in DATASETS.items():
        listed = by_name[name]
        assert listed["class_names"] == list(info.class_names)
        assert listed["input_shape"] == list(info.input_shape)
        assert listed["default_network"] == info.default_network
        assert listed["in_data_dir"] is in_data_dir(name, data_dir)
        assert listed["best_experiment_id"] is None
    # The test setup always provides these two (real or generated).
    assert by_name["mnist"]["in_data_dir"] is True
    assert by_name["cats_vs_dogs"]["in_data_dir"] is True
    assert by_name["cats_vs_dogs"]["class_names"] == ["cat", "dog"]
    assert len(by_name["mnist"]["class_names"]) == 10


def test_datasets_name_the_best_succeeded_experiment(client: TestClient, tmp_path: Path) -> None:
    worse, _, _ = run_to_success(client, tmp_path, best_val_accuracy=0.80)
    better, _, _ = run_to_success(client, tmp_path, best_val_accuracy=0.95)
    put_in_state(client, tmp_path, Status.QUEUED)
    by_name = {d["name"]: d for d in client.get("/datasets").json()}
    assert by_name["mnist"]["best_experiment_id"] == better != worse
    assert by_name["fashion_mnist"]["best_experiment_id"] is None
    assert by_name["cats_vs_dogs"]["best_experiment_id"] is None


# --- GET /health and the OpenAPI document --------------------------------------------------------------


def test_health_reports_the_database_and_the_broker(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "detail": "ok"}
    assert body["broker"] == {"ok": True, "detail": "ok"}


CONTRACT: list[tuple[str, str]] = [
    ("post", "/experiments"),
    ("get", "/experiments"),
    ("get", "/experiments/{experiment_id}"),
    ("get", "/experiments/{experiment_id}/metrics"),
    ("get", "/experiments/{experiment_id}/evaluation"),
    ("get", "/experiments/{experiment_id}/confusion-matrix"),
    ("get", "/experiments/{experiment_id}/artifacts"),
    ("get", "/experiments/{experiment_id}/artifacts/{name}"),
    ("post", "/experiments/{experiment_id}/predictions"),
    ("post", "/experiments/{experiment_id}/cancel"),
    ("get", "/datasets"),
    ("post", "/datasets/{dataset}/predictions"),
    ("get", "/health"),
]


def test_openapi_document_has_the_contract(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    missing = [(method, path) for method, path in CONTRACT if method not in paths.get(path, {})]
    assert missing == []
    # The submit body is documented with the spec's vocabulary.
    schemas = response.json()["components"]["schemas"]
    assert set(schemas["Dataset"]["enum"]) == set(_values(Dataset))
    assert "queue" in schemas["ExperimentCreate"]["properties"]


# --- a broker that does not answer ------------------------------------------------------------------


def test_a_submission_does_not_wait_on_the_processs_shared_broker_pool(client: TestClient) -> None:
    # kombu's pool is shared by every Celery app of the process on the same broker: a connection handed back there
    # mid-read (a control reply consumer's BRPOP) answered a later nudge's PUBLISH with its reply. The nudge takes a
    # connection of its own, so a submission succeeds even while that pool has nothing to lend.
    from infra.task_publisher import get_celery_client

    pool = get_celery_client().pool
    held = [pool.acquire(block=True, timeout=1) for _ in range(pool.limit)]
    try:
        response = client.post("/experiments", json={"dataset": "mnist"})
        assert response.status_code == 202, response.text
    finally:
        for connection in held:
            connection.release()


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the API's Celery client at a port where nothing listens: a real refused connection."""
    from celery import Celery

    import infra.task_publisher

    dead = Celery("epochal-api-dead", broker="redis://127.0.0.1:1/0")
    dead.conf.broker_connection_timeout = 1
    monkeypatch.setattr(infra.task_publisher, "get_celery_client", lambda: dead)
    nowhere = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    monkeypatch.setattr(infra.task_publisher, "get_nudge_client", lambda: nowhere)


def test_a_submission_the_broker_refuses_is_503_and_stored_as_failed(client: TestClient, broker_down: None) -> None:
    response = client.post("/experiments", json={"dataset": "mnist"})
    assert response.status_code == 503
    assert "EPOCHAL_BROKER_URL" in response.json()["detail"]
    stored = client.get("/experiments").json()["items"]
    assert [e["status"] for e in stored] == ["failed"]
    assert "could not be queued" in stored[0]["error"]


def test_a_sweep_the_broker_refuses_leaves_no_experiment_queued(client: TestClient, broker_down: None) -> None:
    response = client.post("/sweeps", json={"base": {"dataset": "mnist"}, "grid": {"optimizer": ["adam", "sgd"]}})
    assert response.status_code == 503
    assert {e["status"] for e in client.get("/experiments").json()["items"]} == {"failed"}
    assert client.get("/health").status_code == 503


# --- retry --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [Status.FAILED, Status.CANCELLED])
def test_retry_requeues_a_failed_or_cancelled_experiment_from_scratch(
    client: TestClient, tmp_path: Path, state: Status
) -> None:
    experiment_id = put_in_state(client, tmp_path, Status.QUEUED)
    if state is Status.FAILED:
        job = jobs.claim(experiment_id, WORKER_NAME)
        assert job is not None
        jobs.record_epoch(job, epoch_result(1))
        jobs.finish_failed(job, "DatasetUnavailable: put mnist.npz in the data folder")
    else:
        client.post(f"/experiments/{experiment_id}/cancel")
    queued_before = len(broker_queue("api-tests"))

    response = client.post(f"/experiments/{experiment_id}/retry")
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["status"], body["error"], body["cancel_requested"], body["worker"]) == ("queued", None, False, None)
    assert body["summary"]["epochs_done"] == 0
    assert client.get(f"/experiments/{experiment_id}/metrics").json() == []
    assert release_waiting() == [experiment_id]
    queue = broker_queue("api-tests")
    assert len(queue) == queued_before + 1
    assert task_args(queue[0]) == [experiment_id]
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None, "the retried job can be claimed again"


@pytest.mark.parametrize("state", [Status.QUEUED, Status.RUNNING, Status.SUCCEEDED])
def test_only_failed_or_cancelled_experiments_can_be_retried(client: TestClient, tmp_path: Path, state: Status) -> None:
    experiment_id = put_in_state(client, tmp_path, state)
    response = client.post(f"/experiments/{experiment_id}/retry")
    assert response.status_code == 409
    assert f"is {state}" in response.json()["detail"]
    assert read(client, experiment_id)["status"] == state


def test_retrying_a_missing_experiment_is_404(client: TestClient) -> None:
    assert client.post("/experiments/12345/retry").status_code == 404
