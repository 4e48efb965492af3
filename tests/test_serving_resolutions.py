"""Predictions by model reference and by dataset, from memory once warm, and never from a resolution that changed.

Two API processes, each on a port of its own so that the test says which one answers, started as production
starts them on the test database and on a broker of this module's own (so that it can be restarted): a change made
through one process is what the other serves on its next request. The in-process tests count the SQL of a warm
prediction, and take experiments through a worker's commits (its success is announced: it can be a new best).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from domain.lifecycle import Status
from epochal.broker import start_embedded_broker
from infra.invalidation import listener
from models import Artifact, Experiment
from models.base import utcnow
from models.db import get_sessionmaker
from tests.seed import finish, png, small_network_h5
from tests.support import OTHER, Service, bearer, counted_work, empty_all_tables, new_key
from tests.test_api import run_to_success
from training.results import CHECKPOINT_NAME

IMAGE = png()


@pytest.fixture(scope="module")
def network_h5(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return small_network_h5(tmp_path_factory.mktemp("network"))


@dataclass
class Broker:
    """A redis-server of this module's own, on a unix socket, which a test may stop and start again."""

    socket: Path
    process: Any = None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def start(self) -> None:
        self.process = start_embedded_broker(self.socket, persist=False)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Pair:
    """Two API processes on one database and one broker: `a` takes the changes, `b` serves the predictions."""

    a: Service
    b: Service
    broker: Broker
    admin: str  # an admin's key
    other: str  # a second user's key, not an admin


@pytest.fixture(scope="module")
def pair(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    folder = Path(tempfile.mkdtemp(prefix="epochal-pair-"))  # short: a unix socket's path has a length limit
    empty_all_tables()  # no active jobs left by an earlier module against a user's quota
    broker = Broker(folder / "broker.sock")
    broker.start()
    env = {**os.environ, "EPOCHAL_API_WORKERS": "1", "EPOCHAL_BROKER_URL": broker.url}
    a = Service(tmp_path_factory.mktemp("api-a"), "api-tests", env)
    b = Service(tmp_path_factory.mktemp("api-b"), "api-tests", env)
    try:
        a.start_api()
        b.api_key = a.api_key
        b.start_api()
        yield Pair(a, b, broker, a.api_key, new_key(OTHER))  # made after the admin: the tables were emptied
    finally:
        a.stop()
        b.stop()
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def succeeded(service: Service, key: str, content: bytes, val_accuracy: float) -> int:
    """A succeeded MNIST experiment of the key's user, with `content` as its checkpoint."""
    with service.http(key=key) as http:
        response = http.post("/experiments", json={"dataset": "mnist", "head": {"units": 10, "activation": "softmax"}})
    assert response.status_code == 202, response.text
    experiment_id = int(response.json()["id"])
    finish(experiment_id, epochs=1, val_accuracy=val_accuracy, checkpoint=content)
    return experiment_id


def registered(service: Service, key: str, experiments: list[int], visibility: str = "public") -> str:
    """A new model with one version per experiment (1, 2, ...), its production alias on version 1."""
    name = f"digits-{uuid.uuid4().hex[:8]}"
    with service.http(key=key) as http:
        assert http.post("/models", json={"name": name, "visibility": visibility}).status_code == 201
        for experiment_id in experiments:
            assert http.post(f"/models/{name}/versions", json={"experiment_id": experiment_id}).status_code == 201
        assert http.put(f"/models/{name}/aliases/production", json={"version": 1}).status_code == 200
    return name


def predict(service: Service, key: str, path: str) -> httpx.Response:
    # The image as the whole body: a small request with its length, the kind answered from memory.
    return httpx.post(
        f"{service.base_url}{path}", content=IMAGE, headers={**bearer(key), "Content-Type": "image/png"}, timeout=60
    )


def memory_lookups(service: Service) -> float:
    text = httpx.get(f"{service.base_url}/metrics", headers=bearer(service.api_key)).text
    found = re.search(r'^epochal_prediction_lookups_total\{source="memory"\} (\S+)$', text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def warm(service: Service, key: str, path: str) -> dict[str, Any]:
    """The answer to `path` once `service` gave it from memory: its caches hold where `path` leads this caller."""
    for _ in range(50):  # the first loads the network; the listener may still be subscribing
        before = memory_lookups(service)
        answer = predict(service, key, path)
        assert answer.status_code == 200, answer.text
        if memory_lookups(service) > before:
            body: dict[str, Any] = answer.json()
            return body
        time.sleep(0.1)
    pytest.fail(f"{path} was never answered from memory: this test would prove nothing\n{service.logs()}")


def test_a_moved_alias_serves_the_new_version_in_the_other_process(pair: Pair, network_h5: bytes) -> None:
    first, second = (succeeded(pair.a, pair.admin, network_h5, 0.5) for _ in range(2))
    name = registered(pair.a, pair.admin, [first, second])
    path = f"/models/{name}/predictions"
    assert warm(pair.b, pair.admin, path)["experiment_id"] == first
    assert warm(pair.b, pair.other, path)["experiment_id"] == first  # a public model: every user's own entry
    with pair.a.http() as http:
        assert http.put(f"/models/{name}/aliases/production", json={"version": 2}).status_code == 200
    assert predict(pair.b, pair.admin, path).json()["experiment_id"] == second
    assert predict(pair.b, pair.other, path).json()["experiment_id"] == second
    # And back, once the new resolution is the one in memory.
    assert warm(pair.b, pair.admin, path)["experiment_id"] == second
    with pair.a.http() as http:
        assert http.delete(f"/models/{name}/aliases/production").status_code == 200
    gone = predict(pair.b, pair.admin, path)
    assert gone.status_code == 404, gone.text
    assert "has no alias 'production'" in gone.json()["detail"]


def test_a_deleted_model_is_a_404_in_the_other_process_and_a_private_one_never_anothers(
    pair: Pair, network_h5: bytes
) -> None:
    experiment_id = succeeded(pair.a, pair.admin, network_h5, 0.5)
    public = registered(pair.a, pair.admin, [experiment_id])
    assert warm(pair.b, pair.other, f"/models/{public}/predictions")["experiment_id"] == experiment_id
    with pair.a.http() as http:
        assert http.delete(f"/models/{public}").status_code == 204
    deleted = predict(pair.b, pair.other, f"/models/{public}/predictions")
    assert deleted.status_code == 404, deleted.text
    # A private model warm in memory for its owner is still another user's 404: the caller is in the entry.
    mine = succeeded(pair.a, pair.other, network_h5, 0.5)
    private = registered(pair.a, pair.other, [mine], visibility="private")
    assert warm(pair.b, pair.other, f"/models/{private}/predictions")["experiment_id"] == mine
    somebody = new_key(f"third-{uuid.uuid4().hex[:6]}")
    refused = predict(pair.b, somebody, f"/models/{private}/predictions")
    assert refused.status_code == 404, refused.text
    assert "does not exist" in refused.json()["detail"]


def test_a_default_set_or_cleared_in_one_process_is_what_the_other_serves_next(pair: Pair, network_h5: bytes) -> None:
    user = new_key(f"defaults-{uuid.uuid4().hex[:6]}")  # of their own: their best is theirs alone
    best = succeeded(pair.a, user, network_h5, 0.9)
    other = succeeded(pair.a, user, network_h5, 0.4)
    name = registered(pair.a, user, [other], visibility="private")
    path = "/datasets/mnist/predictions"
    assert warm(pair.b, user, path)["experiment_id"] == best  # no default: their best by validation
    with pair.a.http(key=user) as http:
        assert http.put("/datasets/mnist/default-model", json={"model": name}).status_code == 200
    assert predict(pair.b, user, path).json()["experiment_id"] == other
    assert warm(pair.b, user, path)["experiment_id"] == other
    with pair.a.http(key=user) as http:
        assert http.delete("/datasets/mnist/default-model").status_code == 204
    assert predict(pair.b, user, path).json()["experiment_id"] == best


def test_a_change_made_while_the_broker_was_down_is_not_served_from_memory(pair: Pair, network_h5: bytes) -> None:
    first, second = (succeeded(pair.a, pair.admin, network_h5, 0.5) for _ in range(2))
    name = registered(pair.a, pair.admin, [first, second])
    path = f"/models/{name}/predictions"
    assert warm(pair.b, pair.admin, path)["experiment_id"] == first
    pair.broker.stop()  # the move's announcement cannot go out: every listener has lost the channel
    try:
        with pair.a.http() as http:
            assert http.put(f"/models/{name}/aliases/production", json={"version": 2}).status_code == 200
    finally:
        pair.broker.start()
    assert predict(pair.b, pair.admin, path).json()["experiment_id"] == second
    assert warm(pair.b, pair.admin, path)["experiment_id"] == second  # and from memory again once subscribed


# --- in process: what a warm prediction by reference costs ----------------------------------------------------


def test_a_warm_prediction_by_alias_or_by_dataset_runs_no_sql(client: TestClient, network_h5: bytes) -> None:
    assert listener().wait_live(10), "the API's invalidation listener never subscribed"
    response = client.post("/experiments", json={"dataset": "mnist", "head": {"units": 10, "activation": "softmax"}})
    experiment_id = int(response.json()["id"])
    with get_sessionmaker()() as session, session.begin():
        experiment = session.get_one(Experiment, experiment_id)
        experiment.status, experiment.finished_at, experiment.best_val_accuracy = Status.SUCCEEDED, utcnow(), 0.5
        session.add(
            Artifact(
                experiment_id=experiment_id,
                name=CHECKPOINT_NAME,
                media_type="application/x-hdf5",
                size=len(network_h5),
                sha256=hashlib.sha256(network_h5).hexdigest(),
                content=network_h5,
            )
        )
    assert client.post("/models", json={"name": "digits"}).status_code == 201
    assert client.post("/models/digits/versions", json={"experiment_id": experiment_id}).status_code == 201
    assert client.put("/models/digits/aliases/staging", json={"version": 1}).status_code == 200
    headers = {"Content-Type": "image/png"}
    for path in ("/models/digits@staging/predictions", "/models/digits:1/predictions", "/datasets/mnist/predictions"):
        first = client.post(path, content=IMAGE, headers=headers)  # fills the caches
        assert first.status_code == 200, first.text
        with counted_work() as work:
            answers = [client.post(path, content=IMAGE, headers=headers) for _ in range(2)]
        assert [a.json()["experiment_id"] for a in answers] == [experiment_id] * 2
        assert work.statements == [], (path, work.statements)
        assert work.hops == ["predict_batch"] * 2, (path, work.hops)
    # A move empties the caches: the next prediction reads the database, and then serves from memory again.
    assert client.delete("/models/digits/aliases/staging").status_code == 200
    with counted_work() as work:
        assert client.post("/models/digits@staging/predictions", content=IMAGE, headers=headers).status_code == 404
    assert work.statements != []


def test_an_experiment_succeeding_in_a_worker_is_the_next_dataset_prediction(
    client: TestClient, network_h5: bytes, tmp_path: Path
) -> None:
    assert listener().wait_live(10), "the API's invalidation listener never subscribed"
    path, headers = "/datasets/mnist/predictions", {"Content-Type": "image/png"}
    first, _, _ = run_to_success(client, tmp_path, best_val_accuracy=0.5, checkpoint=network_h5)
    assert client.post(path, content=IMAGE, headers=headers).json()["experiment_id"] == first
    with counted_work() as work:
        assert client.post(path, content=IMAGE, headers=headers).json()["experiment_id"] == first
    assert work.statements == [], "the dataset's best was not served from memory: this test would prove nothing"
    # The worker's commit of a better one is announced: the next prediction is the new best's.
    better, _, _ = run_to_success(client, tmp_path, best_val_accuracy=0.9, checkpoint=network_h5)
    assert client.post(path, content=IMAGE, headers=headers).json()["experiment_id"] == better
