"""Exports of a checkpoint, each loaded in a fresh process by its own tool and equal to the API's predictions."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.serving.export_cache import get_export_cache
from models import Artifact
from models.db import session_scope
from tests.seed import noise_digits, submitted_and_succeeded
from training.exports import INPUT_NAME
from training.images import preprocess_image
from training.results import CHECKPOINT_NAME
from training.spec import DATASETS, Dataset, ExperimentSpec

# Each tool alone in a fresh process: the file must stand on its own, with nothing of the service imported.
LOADERS = {
    "keras": "import keras\nm = keras.saving.load_model(path, compile=False)\nout = m(x, training=False)",
    "savedmodel": (
        "import tensorflow as tf, zipfile\nzipfile.ZipFile(path).extractall(path + '.d')\n"
        "f = tf.saved_model.load(path + '.d/1').signatures['serving_default']\n"
        f"out = list(f({INPUT_NAME}=tf.constant(x)).values())[0]"
    ),
    "onnx": (
        "import onnxruntime as ort\ns = ort.InferenceSession(path)\nout = s.run(None, {s.get_inputs()[0].name: x})[0]"
    ),
}


@pytest.fixture(scope="module")
def trained_checkpoint(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tiny MNIST network trained by the service's own runner on a slice of the data, as the worker stores it."""
    from training.runner import run_experiment

    spec = ExperimentSpec.model_validate(
        {"dataset": "mnist", "epochs": 1, "batch_size": 64, "train_size": 320, "validation": "test"}
    )
    result = run_experiment(spec, data_dir, tmp_path_factory.mktemp("trained"))
    assert result.checkpoint is not None
    return result.checkpoint.read_bytes()


def test_each_export_loads_in_its_own_tool_and_predicts_as_the_api(
    client: TestClient, trained_checkpoint: bytes, tmp_path: Path
) -> None:
    experiment_id = submitted_and_succeeded(client, trained_checkpoint)
    images = noise_digits(4)
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    answered = client.post(f"/experiments/{experiment_id}/predictions/batch", files=files)
    assert answered.status_code == 200, answered.text
    api_outputs = np.array([p["outputs"] for p in answered.json()["predictions"]])
    # The raw 0..255 input the checkpoint takes, decoded as the API decodes it.
    x = np.concatenate([preprocess_image(data, DATASETS[Dataset.MNIST]) for data in images]).astype("float32")
    assert x.shape == (4, 28, 28) and x.max() > 1
    np.save(tmp_path / "x.npy", x)
    processes = {}
    for fmt, load in LOADERS.items():
        response = client.get(f"/experiments/{experiment_id}/exports/{fmt}")
        assert response.status_code == 200, response.text
        assert response.headers["ETag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'
        path = tmp_path / f"export.{fmt}"
        path.write_bytes(response.content)
        script = (
            f"import numpy as np, json\npath = {str(path)!r}\nx = np.load({str(tmp_path / 'x.npy')!r})\n{load}\n"
            "print(json.dumps(np.asarray(out).tolist()))"
        )
        env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
        processes[fmt] = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
    for fmt, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, (fmt, err[-3000:])
        outputs = np.array(json.loads(out.strip().splitlines()[-1]))
        np.testing.assert_allclose(outputs, api_outputs, atol=1e-5, err_msg=fmt)
    h5 = client.get(f"/experiments/{experiment_id}/exports/h5")
    assert h5.content == trained_checkpoint
    assert zipfile.ZipFile(tmp_path / "export.savedmodel").namelist().count("1/saved_model.pb") == 1


def test_a_second_download_is_served_from_the_stored_export(client: TestClient, trained_checkpoint: bytes) -> None:
    experiment_id = submitted_and_succeeded(client, trained_checkpoint)
    cache = get_export_cache()
    before = cache.made
    first = client.get(f"/experiments/{experiment_id}/exports/onnx")
    assert first.status_code == 200, first.text
    assert cache.made == before + 1
    listed = {a["name"]: a for a in client.get(f"/experiments/{experiment_id}/artifacts").json()}
    second = client.get(f"/experiments/{experiment_id}/exports/onnx")
    assert cache.made == before + 1  # not exported again
    assert second.content == first.content and second.headers["ETag"] == first.headers["ETag"]
    again = {a["name"]: a for a in client.get(f"/experiments/{experiment_id}/artifacts").json()}
    assert again["best_model.onnx"] == listed["best_model.onnx"]
    assert listed["best_model.onnx"]["sha256"] == hashlib.sha256(first.content).hexdigest()


def test_exports_are_the_owners_and_need_a_succeeded_experiment(
    client: TestClient, other_client: TestClient, trained_checkpoint: bytes
) -> None:
    experiment_id = submitted_and_succeeded(client, trained_checkpoint)
    other = other_client.get(f"/experiments/{experiment_id}/exports/keras")
    assert other.status_code == 404 and "does not exist" in other.json()["detail"]
    queued = client.post("/experiments", json={"dataset": "mnist", "epochs": 1}).json()["id"]
    response = client.get(f"/experiments/{queued}/exports/keras")
    assert response.status_code == 409 and "queued" in response.json()["detail"]
    assert client.get(f"/experiments/{experiment_id}/exports/tflite").status_code == 422


def test_a_checkpoint_that_fails_its_check_or_its_export_is_409(client: TestClient, trained_checkpoint: bytes) -> None:
    experiment_id = submitted_and_succeeded(client, trained_checkpoint)
    with session_scope() as session:
        session.execute(
            update(Artifact)
            .where(Artifact.experiment_id == experiment_id, Artifact.name == CHECKPOINT_NAME)
            .values(content=bytes([trained_checkpoint[0] ^ 1]) + trained_checkpoint[1:])
        )
    response = client.get(f"/experiments/{experiment_id}/exports/keras")
    assert response.status_code == 409 and "integrity" in response.json()["detail"]
    junk = submitted_and_succeeded(client, b"not a network")
    refused = client.get(f"/experiments/{junk}/exports/onnx")
    assert refused.status_code == 409 and "cannot be exported as onnx" in refused.json()["detail"]
