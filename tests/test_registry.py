"""The model registry: models, numbered versions from experiments, aliases moved atomically, predictions by
reference, visibility, and model cards; on the database the suite runs on (SQLite, or PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.serving import predictors
from domain import registry
from models import Artifact, User
from models.db import get_sessionmaker, session_scope
from tests.seed import png, small_network_h5, submitted_and_succeeded
from tests.support import ADMIN
from training.results import CHECKPOINT_NAME

IMAGE = {"file": ("digit.png", png(), "image/png")}


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return small_network_h5(tmp_path_factory.mktemp("network"))


def create(client: TestClient, name: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/models", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def register(client: TestClient, name: str, experiment_id: int) -> dict[str, Any]:
    response = client.post(f"/models/{name}/versions", json={"experiment_id": experiment_id})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def promote(client: TestClient, name: str, alias: str, version: int) -> dict[str, Any]:
    response = client.put(f"/models/{name}/aliases/{alias}", json={"version": version})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_versions_are_numbered_from_experiments_and_pinned_to_their_checkpoint(
    client: TestClient, network: bytes
) -> None:
    first, second = submitted_and_succeeded(client, network), submitted_and_succeeded(client, network)
    created = create(client, "digits", description="the MNIST reference")
    assert created["owner"] == ADMIN and created["visibility"] == "private" and created["latest_version"] is None
    assert [register(client, "digits", e)["number"] for e in (first, second, first)] == [1, 2, 3]
    version = client.get("/models/digits/versions/2").json()
    with session_scope() as session:
        sha = session.scalars(select(Artifact.sha256).where(Artifact.experiment_id == second)).one()
    assert version["experiment_id"] == second and version["checkpoint_sha256"] == sha
    assert [v["number"] for v in client.get("/models/digits/versions").json()] == [1, 2, 3]
    assert client.get("/models/digits").json()["latest_version"] == 3
    assert client.get("/models/digits/versions/4").status_code == 404
    # Past the 32-bit column a number is a version that cannot exist, not a database error (PostgreSQL overflows).
    for past_the_column in (2**31, 2**63):
        assert client.get(f"/models/digits/versions/{past_the_column}").status_code == 404
        assert client.get(f"/models/digits/versions/{past_the_column}/card").status_code == 404
    assert client.post("/models", json={"name": "digits"}).status_code == 409
    assert "already exists" in client.post("/models", json={"name": "digits"}).json()["detail"]
    assert [m["name"] for m in client.get("/models").json()] == ["digits"]


@pytest.mark.parametrize("name", ["digits@prod", "a:1", "-dash", "", "x" * 101, "white space"])
def test_a_name_that_cannot_be_referred_to_is_422(client: TestClient, name: str) -> None:
    response = client.post("/models", json={"name": name})
    assert response.status_code == 422, response.text
    assert "name" in response.json()["message"]


def test_only_a_succeeded_experiment_with_a_checkpoint_of_your_own_becomes_a_version(
    client: TestClient, other_client: TestClient, network: bytes
) -> None:
    create(other_client, "mine")
    queued = other_client.post("/experiments", json={"dataset": "mnist", "epochs": 2}).json()["id"]
    response = other_client.post("/models/mine/versions", json={"experiment_id": queued})
    assert response.status_code == 409 and "is queued" in response.json()["detail"], response.text
    admins = submitted_and_succeeded(client, network)  # another user's experiment: as if it did not exist
    response = other_client.post("/models/mine/versions", json={"experiment_id": admins})
    assert response.status_code == 404 and "does not exist" in response.json()["detail"]
    without = submitted_and_succeeded(other_client, network)
    with session_scope() as session:
        session.query(Artifact).filter(Artifact.experiment_id == without).delete()
    response = other_client.post("/models/mine/versions", json={"experiment_id": without})
    assert response.status_code == 409 and CHECKPOINT_NAME in response.json()["detail"]
    assert other_client.get("/models/mine/versions").json() == []


def test_aliases_move_and_every_move_is_kept(client: TestClient, network: bytes) -> None:
    create(client, "digits")
    for _ in range(3):
        register(client, "digits", submitted_and_succeeded(client, network))
    assert promote(client, "digits", "production", 1)["from_version"] is None
    assert promote(client, "digits", "production", 3) | {"moved_at": None} == {
        "alias": "production",
        "from_version": 1,
        "to_version": 3,
        "moved_by": client.get("/me").json()["id"],
        "moved_at": None,
    }
    promote(client, "digits", "staging", 2)
    shown = client.get("/models/digits").json()
    assert shown["aliases"] == {"production": 3, "staging": 2}
    assert {v["number"]: v["aliases"] for v in shown["versions"]} == {1: [], 2: ["staging"], 3: ["production"]}
    assert client.put("/models/digits/aliases/production", json={"version": 9}).status_code == 404
    assert client.put("/models/digits/aliases/no@pe", json={"version": 1}).status_code == 422
    deleted = client.delete("/models/digits/aliases/staging")
    assert deleted.status_code == 200 and deleted.json()["to_version"] is None
    assert client.delete("/models/digits/aliases/staging").status_code == 404
    history = client.get("/models/digits/aliases/production/history").json()
    assert [(m["from_version"], m["to_version"]) for m in history] == [(None, 1), (1, 3)]
    moves = [(m["alias"], m["from_version"], m["to_version"]) for m in client.get("/models/digits").json()["history"]]
    assert moves == [("production", None, 1), ("production", 1, 3), ("staging", None, 2), ("staging", 2, None)]


def test_predictions_by_name_alias_and_version(client: TestClient, network: bytes) -> None:
    experiments = [submitted_and_succeeded(client, network) for _ in range(2)]
    create(client, "digits")
    for experiment_id in experiments:
        register(client, "digits", experiment_id)
    response = client.post("/models/digits/predictions", files=IMAGE)
    assert response.status_code == 404 and "no alias 'production'" in response.json()["detail"], response.text
    promote(client, "digits", "production", 1)
    promote(client, "digits", "staging", 2)
    served = {
        ref: client.post(f"/models/{ref}/predictions", files=IMAGE).json()["experiment_id"]
        for ref in ("digits", "digits@production", "digits@staging", "digits:1", "digits:2")
    }
    assert served == {
        "digits": experiments[0],
        "digits@production": experiments[0],
        "digits@staging": experiments[1],
        "digits:1": experiments[0],
        "digits:2": experiments[1],
    }
    # A moved alias serves its new version on the next request.
    promote(client, "digits", "production", 2)
    assert client.post("/models/digits/predictions", files=IMAGE).json()["experiment_id"] == experiments[1]
    # The raw body works as on the other prediction routes, and so does a batch.
    raw = client.post("/models/digits:1/predictions", content=png(), headers={"Content-Type": "image/png"})
    assert raw.status_code == 200 and raw.json()["experiment_id"] == experiments[0]
    batch = client.post("/models/digits@staging/predictions/batch", files=[("files", IMAGE["file"])] * 3)
    assert (
        batch.status_code == 200 and [p["experiment_id"] for p in batch.json()["predictions"]] == [experiments[1]] * 3
    )
    for bad in ("digits:0", "digits:x", "digits@", "digits@9x"):
        response = client.post(f"/models/{bad}/predictions", files=IMAGE)
        assert response.status_code == 422 and "NAME@ALIAS" in response.json()["detail"], (bad, response.text)
    assert client.post("/models/digits:7/predictions", files=IMAGE).status_code == 404
    assert client.post("/models/nothing/predictions", files=IMAGE).status_code == 404


def test_a_version_serves_only_the_checkpoint_it_was_registered_with(
    client: TestClient, network: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predictors, "_cache", None)  # a fresh cache: the network is read from the database again
    experiment_id = submitted_and_succeeded(client, network)
    create(client, "digits")
    register(client, "digits", experiment_id)
    with session_scope() as session:  # the stored bytes change after registration (and so does their sha256 row)
        session.execute(
            update(Artifact).where(Artifact.experiment_id == experiment_id).values(sha256="0" * 64, content=b"other")
        )
    response = client.post("/models/digits:1/predictions", files=IMAGE)
    assert response.status_code == 409 and "failed its integrity check" in response.json()["detail"], response.text


def test_a_private_model_is_another_users_404_and_a_public_one_is_read_only_to_them(
    client: TestClient, other_client: TestClient, network: bytes
) -> None:
    experiment_id = submitted_and_succeeded(client, network)
    for name, visibility in (("hidden", "private"), ("shared", "public")):
        create(client, name, visibility=visibility)
        register(client, name, experiment_id)
        promote(client, name, "production", 1)
    assert [m["name"] for m in other_client.get("/models").json()] == ["shared"]
    assert other_client.get("/models/hidden").status_code == 404
    assert other_client.post("/models/hidden/predictions", files=IMAGE).status_code == 404
    # Public: read and predicted with by everyone...
    assert other_client.get("/models/shared").json()["versions"][0]["experiment_id"] == experiment_id
    assert other_client.get("/models/shared/versions/1/card").status_code == 200
    assert other_client.post("/models/shared/predictions", files=IMAGE).json()["experiment_id"] == experiment_id
    # ...changed by its owner or an admin only.
    mine = submitted_and_succeeded(other_client, network)
    refusals = [
        other_client.put("/models/shared/aliases/production", json={"version": 1}),
        other_client.delete("/models/shared/aliases/production"),
        other_client.post("/models/shared/versions", json={"experiment_id": mine}),
        other_client.delete("/models/shared"),
    ]
    for response in refusals:
        assert response.status_code == 403 and "only its owner or an admin" in response.json()["detail"]
    assert client.get("/models/shared").json()["history"][-1]["to_version"] == 1
    # An admin changes another user's model.
    create(other_client, "theirs")
    register(other_client, "theirs", mine)
    assert promote(client, "theirs", "production", 1)["to_version"] == 1
    assert client.delete("/models/theirs").status_code == 204
    assert other_client.get("/models/theirs").status_code == 404


def test_deleting_a_model_leaves_its_experiments(client: TestClient, network: bytes) -> None:
    experiment_id = submitted_and_succeeded(client, network)
    create(client, "digits")
    register(client, "digits", experiment_id)
    promote(client, "digits", "production", 1)
    assert client.delete("/models/digits").status_code == 204
    assert client.get("/models/digits").status_code == 404
    assert client.get(f"/experiments/{experiment_id}").json()["status"] == "succeeded"
    create(client, "digits")  # the name is free again, and its versions start over
    assert register(client, "digits", experiment_id)["number"] == 1


def _at_once(work: Callable[[int], Any], count: int) -> list[Any]:
    """`work(i)` for i in 0..count-1, each in its own thread and session, started together."""
    start, results, errors = threading.Barrier(count), [None] * count, []

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work(index)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return results


def _as_admin(work: Callable[[Any, User], Any]) -> Any:
    with get_sessionmaker()() as session:
        user = session.scalars(select(User).where(User.name == ADMIN)).one()
        return work(session, user)


def test_concurrent_promotions_of_one_alias_end_with_one_winner_and_every_move_recorded(
    client: TestClient, network: bytes
) -> None:
    create(client, "digits")
    count = 6
    for _ in range(count):
        register(client, "digits", submitted_and_succeeded(client, network))
    promote(client, "digits", "production", 1)
    moves = _at_once(
        lambda i: _as_admin(lambda s, u: registry.set_alias(s, u, "digits", "production", i + 1).id), count
    )
    assert len(set(moves)) == count
    history = client.get("/models/digits/aliases/production/history").json()
    assert len(history) == 1 + count
    # Applied one after the other: each move starts where the one before it left the alias...
    for before, after in pairwise(history):
        assert after["from_version"] == before["to_version"], history
    # ...and the alias points where the last one left it: one winner.
    assert client.get("/models/digits").json()["aliases"] == {"production": history[-1]["to_version"]}
    assert sorted(m["to_version"] for m in history[1:]) == list(range(1, count + 1))


def test_concurrent_registrations_take_distinct_numbers(client: TestClient, network: bytes) -> None:
    create(client, "digits")
    count = 6
    experiments = [submitted_and_succeeded(client, network) for _ in range(count)]
    numbers = _at_once(
        lambda i: _as_admin(lambda s, u: registry.register_version(s, u, "digits", experiments[i]).number), count
    )
    assert sorted(numbers) == list(range(1, count + 1))
    versions = client.get("/models/digits/versions").json()
    assert sorted(v["experiment_id"] for v in versions) == sorted(experiments)


def test_the_card_of_a_version(client: TestClient, network: bytes, tmp_path: Path) -> None:
    experiment_id = submitted_and_succeeded(client, network)
    create(client, "digits")
    register(client, "digits", experiment_id)
    card = client.get("/models/digits/versions/1/card").json()
    assert (card["model"], card["version"], card["experiment_id"]) == ("digits", 1, experiment_id)
    assert card["spec"]["dataset"] == "mnist" and card["spec"]["epochs"] == 2
    assert card["dataset"]["name"] == "mnist" and "digits" in card["dataset"]["description"].lower()
    assert card["figures"]["validation_accuracy"] == 0.9 and card["figures"]["test_accuracy"] == 0.8
    assert card["input"]["input_shape"] == [None, 28, 28] and card["input"]["input_range"] == [0, 255]
    assert card["training"]["seed"] == card["spec"]["seed"]
    assert card["training"]["attempts"] == []  # seeded straight into the database: no worker ran it
    assert client.get(f"/experiments/{experiment_id}/card").json() == {**card, "model": None, "version": None}
    assert client.get("/models/digits/versions/2/card").status_code == 404


def test_dataset_predictions_use_your_default_model_else_the_class_wide_one_else_your_best(
    client: TestClient, other_client: TestClient, network: bytes
) -> None:
    admins_best = submitted_and_succeeded(client, network)
    theirs_best = submitted_and_succeeded(other_client, network)
    theirs_other = submitted_and_succeeded(other_client, network)
    create(client, "reference", visibility="public")
    register(client, "reference", submitted_and_succeeded(client, network))
    reference = client.get("/models/reference/versions/1").json()["experiment_id"]
    promote(client, "reference", "production", 1)
    create(other_client, "mine")
    register(other_client, "mine", theirs_other)
    promote(other_client, "mine", "production", 1)

    def served(as_client: TestClient) -> int:
        response = as_client.post("/datasets/mnist/predictions", files=IMAGE)
        assert response.status_code == 200, response.text
        return int(response.json()["experiment_id"])

    assert served(other_client) == max(theirs_best, theirs_other)  # the newest on a tie: as before any default
    # A user's choice changes their own predictions only.
    chosen = other_client.put("/datasets/mnist/default-model", json={"model": "mine"})
    assert chosen.status_code == 200 and chosen.json()["mine"] == "mine@production", chosen.text
    assert served(other_client) == theirs_other
    assert served(client) == max(admins_best, reference)
    # Only an admin sets the class-wide default, to a public model; a user's own default still comes first.
    refused = other_client.put("/datasets/mnist/default-model", json={"model": "reference", "for_everyone": True})
    assert refused.status_code == 403
    private = client.post("/models", json={"name": "private-one"})
    assert private.status_code == 201
    register(client, "private-one", admins_best)
    response = client.put("/datasets/mnist/default-model", json={"model": "private-one:1", "for_everyone": True})
    assert response.status_code == 409 and "public" in response.json()["detail"]
    everyone = client.put("/datasets/mnist/default-model", json={"model": "reference@production", "for_everyone": True})
    assert everyone.status_code == 200 and everyone.json()["everyone"] == "reference@production"
    assert served(client) == reference and served(other_client) == theirs_other
    assert other_client.delete("/datasets/mnist/default-model").status_code == 204
    assert served(other_client) == reference
    assert (
        "class-wide default model reference@production"
        in other_client.get("/datasets/mnist/default-model").json()["serving"]
    )
    # A default follows its alias; one that no longer resolves says so.
    client.delete("/models/reference/aliases/production")
    response = other_client.post("/datasets/mnist/predictions", files=IMAGE)
    assert response.status_code == 409 and "does not resolve" in response.json()["detail"], response.text
    assert client.delete("/datasets/mnist/default-model?for_everyone=true").status_code == 204
    assert served(other_client) == max(theirs_best, theirs_other)
    assert other_client.delete("/datasets/mnist/default-model").status_code == 404
    wrong = other_client.put("/datasets/cats_vs_dogs/default-model", json={"model": "mine"})
    assert wrong.status_code == 409 and "trained on mnist" in wrong.json()["detail"]
