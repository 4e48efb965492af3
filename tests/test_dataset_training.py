"""Training on an uploaded dataset, end to end: upload class folders, a real worker prepares them, an experiment names
the dataset, the worker trains on its packed arrays (fetched through its blob cache), and the results and predictions
speak its class names. Also run on PostgreSQL by CI's second suite."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support import Service, running_service, wait_until_finished
from tests.upload_archives import encode

pytestmark = pytest.mark.e2e

QUEUE = "e2e-dataset-training"
# Names a person gives classes: spaces, accents, other scripts. Canonical order is by name.
CLASSES = ("band at the top", "band in the middle", "ümlaut band below")
BANDS = {name: index for index, name in enumerate(CLASSES)}  # which third of the rows is bright
SIZE = (21, 24)  # height, width: too small for the convnet, so the MLP is the default


def picture(name: str, rng: np.random.Generator, size: tuple[int, int] = SIZE, channels: int = 1) -> bytes:
    """A class's picture: a bright band across one third of its rows, on a noisy dark ground. Easy to learn (a
    linear function of the pixels tells them apart), as a test's data must be."""
    height, width = size
    pixels = rng.integers(0, 60, (height, width)).astype(np.uint8)
    third = height // 3
    pixels[BANDS[name] * third : (BANDS[name] + 1) * third] = 230
    return encode(np.repeat(pixels[..., None], 3, axis=2) if channels == 3 else pixels)


def archive(per_class: int = 30) -> bytes:
    rng = np.random.default_rng(7)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name in CLASSES:
            for i in range(per_class):
                z.writestr(f"greys/{name}/{i:03d}.png", picture(name, rng))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from tests.support import empty_all_tables

    empty_all_tables()
    with running_service(tmp_path_factory.mktemp("dataset-training"), QUEUE, ["trainer"]) as running:
        yield running


@pytest.fixture(scope="module")
def http(service: Service) -> Iterator[httpx.Client]:
    with service.http() as client:
        yield client


def ready_version(http: httpx.Client, name: str, service: Service) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while True:
        version: dict[str, Any] = http.get(f"/datasets/{name}").json()["versions"][-1]
        if version["status"] != "processing":
            assert version["status"] == "ready", version
            return version
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} still processing\n{service.logs()}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def greys(http: httpx.Client, service: Service) -> dict[str, Any]:
    created = http.post("/datasets?name=greys", content=archive(), headers={"Content-Type": "application/zip"})
    assert created.status_code == 202, created.text
    return ready_version(http, "greys", service)


def test_a_spec_on_a_dataset_still_processing_or_unknown_is_refused(http: httpx.Client, service: Service) -> None:
    missing = http.post("/experiments", json={"dataset": "nothing-here", "epochs": 1})
    assert missing.status_code == 404 and "GET /datasets lists" in missing.json()["detail"]
    bad_version = http.post("/experiments", json={"dataset": "mnist@2"})
    assert bad_version.status_code == 422 and "version 1 only" in bad_version.text


def test_an_uploaded_dataset_trains_evaluates_and_predicts_with_its_class_names(
    http: httpx.Client, service: Service, greys: dict[str, Any], tmp_path: Path
) -> None:
    assert greys["class_names"] == list(CLASSES)
    body = {"dataset": "greys", "epochs": 4, "batch_size": 16, "seed": 3}
    created = http.post("/experiments", json=body)
    assert created.status_code == 202, created.text
    experiment = created.json()
    # The answer says what the bare name and the defaults came to: the version, the network, the head.
    assert (experiment["dataset"], experiment["dataset_version"]) == ("greys", greys["version"])
    assert experiment["network"] == "mlp" and experiment["head"]["units"] == 3
    [finished] = wait_until_finished(http, [experiment["id"]], timeout_s=300, service=service)
    assert finished["status"] == "succeeded", finished
    total = sum(greys["counts"]["train"].values())
    assert finished["train_count"] + finished["validation_count"] == total

    matrix = http.get(f"/experiments/{experiment['id']}/confusion-matrix").json()
    assert matrix["labels"] == list(CLASSES)
    counts = np.array(matrix["matrix"])
    assert counts.sum() == sum(greys["counts"]["test"].values())
    assert np.trace(counts) == counts.sum(), f"three bands are told apart: {matrix}"
    report = http.get(f"/experiments/{experiment['id']}/evaluation").json()["classification_report"]
    assert set(CLASSES) <= set(report)

    rng = np.random.default_rng(99)
    for name in CLASSES:
        image = picture(name, rng)
        answer = http.post(f"/experiments/{experiment['id']}/predictions", files={"file": ("x.png", image)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["label"] == name
        by_dataset = http.post("/datasets/greys/predictions", files={"file": ("x.png", image)})
        assert by_dataset.status_code == 200 and by_dataset.json()["label"] == name
    # An RGB photo of another size is fitted to the dataset's 21x24 grayscale, as its images were.
    large = picture("ümlaut band below", rng, size=(90, 60), channels=3)
    answer = http.post(f"/experiments/{experiment['id']}/predictions", files={"file": ("big.png", large)})
    assert answer.status_code == 200 and answer.json()["label"] == "ümlaut band below"

    card = http.get(f"/experiments/{experiment['id']}/card").json()
    assert card["dataset"]["name"] == "greys" and card["dataset"]["version"] == greys["version"]
    assert card["dataset"]["content_sha256"] == greys["content_sha256"]
    assert card["input"]["input_shape"] == [None, *SIZE]
    # While it trained on the version, deleting that version was refused; now it is done, it may go.
    assert http.delete(f"/datasets/greys/{greys['version']}").status_code == 204
    plot = http.get(f"/experiments/{experiment['id']}/plots/confusion-matrix.png")
    assert plot.status_code == 200  # the results stay readable without the dataset
    assert http.post(f"/experiments/{experiment['id']}/cancel").status_code == 409  # over already
    prediction = http.post(f"/experiments/{experiment['id']}/predictions", files={"file": ("x.png", image)})
    assert prediction.status_code == 200  # its network still serves (its input contract was cached with it)


def test_a_version_in_use_is_not_deleted_and_a_bad_head_is_a_422(http: httpx.Client, service: Service) -> None:
    created = http.post("/datasets?name=greys2", content=archive(8), headers={"Content-Type": "application/zip"})
    assert created.status_code == 202, created.text
    version = ready_version(http, "greys2", service)
    head = http.post("/experiments", json={"dataset": "greys2", "head": {"units": 10, "activation": "softmax"}})
    assert head.status_code == 422 and "head.units must be 3 for greys2" in head.json()["message"]
    queued = http.post("/experiments", json={"dataset": f"greys2@{version['version']}", "epochs": 30, "queue": QUEUE})
    assert queued.status_code == 202, queued.text
    refused = http.delete(f"/datasets/greys2/{version['version']}")
    assert refused.status_code == 409 and "cancel them" in refused.json()["detail"]
    assert http.post(f"/experiments/{queued.json()['id']}/cancel").status_code in (200, 202)
    assert http.delete(f"/datasets/greys2/{version['version']}").status_code == 204
    retry = http.post(f"/experiments/{queued.json()['id']}/retry")
    assert retry.status_code == 409 and "cannot be retried" in retry.json()["detail"]
