"""A private dataset shared with named users: they see it and use it (lists, specs, network checks), and change
nothing; unshared, it is a 404 for them again, as one that does not exist."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.test_dataset_rows import row_of, upload, zip_bytes
from tests.upload_archives import class_files
from worker.datasets import prepare

NAME = "shared-greys"


@pytest.fixture
def private_dataset(client: TestClient) -> dict[str, Any]:
    """A ready private dataset of the admin's, prepared in-process (the task function, as a worker runs it)."""
    created = upload(client, NAME, zip_bytes(class_files({"ash": 5, "coal": 5, "snow": 5}, size=(10, 12))))
    assert created.status_code == 202, created.text
    assert prepare(row_of(NAME, 1).id) == "ready"
    return {"name": NAME, "version": 1}


def other_id(other_client: TestClient) -> int:
    return int(other_client.get("/me").json()["id"])


def test_a_shared_dataset_is_seen_and_trained_on_and_unshared_is_a_404_again(
    client: TestClient, other_client: TestClient, private_dataset: dict[str, Any]
) -> None:
    user_id = other_id(other_client)
    spec = {"dataset": NAME, "epochs": 1}
    assert other_client.get(f"/datasets/{NAME}").status_code == 404
    assert other_client.post("/experiments", json=spec).status_code == 404

    assert client.put(f"/datasets/{NAME}/shares/{user_id}").status_code == 204
    assert client.put(f"/datasets/{NAME}/shares/{user_id}").status_code == 204  # idempotent
    shares = client.get(f"/datasets/{NAME}/shares").json()
    assert [s["user_id"] for s in shares] == [user_id]
    assert other_client.get(f"/datasets/{NAME}").json()["versions"][0]["class_names"] == ["ash", "coal", "snow"]
    assert NAME in {d["name"] for d in other_client.get("/datasets").json()}
    queued = other_client.post("/experiments", json=spec)
    assert queued.status_code == 202, queued.text
    assert queued.json()["dataset_version"] == 1
    checked = other_client.post("/networks/check", json={"network": "mlp", "dataset": NAME})
    assert checked.status_code == 200 and checked.json()["input_shape"] == [10, 12]

    # Shared is not owned: they change nothing of it.
    assert other_client.delete(f"/datasets/{NAME}/1").status_code == 403
    assert other_client.put(f"/datasets/{NAME}/shares/{user_id}").status_code == 403
    assert other_client.get(f"/datasets/{NAME}/shares").status_code == 403
    assert upload(other_client, NAME, zip_bytes(class_files({"a": 2, "b": 2}))).status_code == 409

    assert other_client.post(f"/experiments/{queued.json()['id']}/cancel").status_code == 200
    assert client.delete(f"/datasets/{NAME}/shares/{user_id}").status_code == 204
    assert client.get(f"/datasets/{NAME}/shares").json() == []
    assert other_client.get(f"/datasets/{NAME}").status_code == 404
    gone = other_client.post("/experiments", json=spec)
    assert gone.status_code == 404 and f"dataset '{NAME}' does not exist" in gone.json()["detail"]
    assert client.delete(f"/datasets/{NAME}/shares/{user_id}").status_code == 404  # not shared any more


def test_sharing_names_a_user_that_exists_and_is_not_the_owner_and_never_a_built_in(
    client: TestClient, other_client: TestClient, private_dataset: dict[str, Any]
) -> None:
    missing = client.put(f"/datasets/{NAME}/shares/999999")
    assert missing.status_code == 404 and "user 999999 does not exist" in missing.json()["detail"]
    owner = client.get("/me").json()["id"]
    assert client.put(f"/datasets/{NAME}/shares/{owner}").status_code == 422
    assert client.put(f"/datasets/mnist/shares/{other_id(other_client)}").status_code == 403
    assert client.get(f"/datasets/{NAME}/shares").json() == []


def test_a_sweep_over_an_uploaded_dataset_records_its_version_in_every_run(
    client: TestClient, private_dataset: dict[str, Any]
) -> None:
    body = {"base": {"dataset": NAME, "epochs": 1}, "grid": {"optimizer": ["adam", "sgd"], "batch_size": [8, 16]}}
    created = client.post("/sweeps", json=body)
    assert created.status_code == 202, created.text
    runs = created.json()["experiments"]
    assert len(runs) == 4
    for run in runs:
        read = client.get(f"/experiments/{run['id']}").json()
        assert (read["dataset"], read["dataset_version"], read["head"]["units"]) == (NAME, 1, 3)
    bad = client.post(
        "/sweeps", json={**body, "base": {"dataset": NAME, "head": {"units": 2, "activation": "softmax"}}}
    )
    assert bad.status_code == 422 and "head.units must be 3" in bad.text
    for run in runs:
        client.post(f"/experiments/{run['id']}/cancel")
