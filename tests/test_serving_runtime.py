"""The runtime predictions go through: onnxruntime on the checkpoint's checked ONNX export, Keras where that fails.

Real checkpoints trained by the service's runner on a slice of MNIST; the answers are compared with the Keras network
loaded from the same bytes, on the inputs the API decodes.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.serving import export_cache, predictors
from api.serving.export_cache import get_export_cache
from api.serving.predictors import PredictorCache, ServedModel
from config import get_settings
from models import Artifact
from models.db import session_scope
from tests.seed import noise_digits, submitted_and_succeeded
from training import exports
from training.exports import FILES, ExportFormat, export_checkpoint
from training.images import preprocess_image
from training.onnx_runtime import TOLERANCE, OnnxPredictor, probe_batch
from training.results import CHECKPOINT_NAME
from training.spec import DATASETS, Activation, Dataset, ExperimentSpec

MNIST = DATASETS[Dataset.MNIST]
IMAGES = 6


def trained(data_dir: Path, folder: Path, seed: int) -> bytes:
    from training.runner import run_experiment

    spec = ExperimentSpec.model_validate(
        {"dataset": "mnist", "epochs": 1, "batch_size": 64, "train_size": 320, "validation": "test", "seed": seed}
    )
    result = run_experiment(spec, data_dir, folder)
    assert result.checkpoint is not None
    return result.checkpoint.read_bytes()


@pytest.fixture(scope="module")
def checkpoint(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return trained(data_dir, tmp_path_factory.mktemp("trained"), seed=1)


@pytest.fixture(scope="module")
def other_checkpoint(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Another network of the same shape: its ONNX export takes the same input and answers differently."""
    return trained(data_dir, tmp_path_factory.mktemp("other"), seed=2)


@pytest.fixture(autouse=True)
def no_prediction_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "predictions_per_second", 100_000)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[PredictorCache]:
    fresh = PredictorCache(capacity=4, window_s=0.0, max_batch=64)
    monkeypatch.setattr(predictors, "_cache", fresh)
    yield fresh


def predicted(client: TestClient, experiment_id: int, images: list[bytes]) -> list[dict[str, Any]]:
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    response = client.post(f"/experiments/{experiment_id}/predictions/batch", files=files)
    assert response.status_code == 200, response.text
    answers: list[dict[str, Any]] = response.json()["predictions"]
    return answers


def keras_outputs(content: bytes, images: list[bytes]) -> np.ndarray:
    """What the Keras network of `content` answers for `images`, decoded as the API decodes them."""
    from training.prediction import Predictor

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CHECKPOINT_NAME
        path.write_bytes(content)
        predictor = Predictor.from_file(path, MNIST, Activation.SOFTMAX)
    return predictor.predict_batch(np.concatenate([preprocess_image(data, MNIST) for data in images]))


def served(cache: PredictorCache) -> ServedModel:
    (model,) = cache._items.values()
    return model


def assert_answers(answers: list[dict[str, Any]], expected: np.ndarray) -> None:
    np.testing.assert_allclose(np.array([a["outputs"] for a in answers]), expected, atol=TOLERANCE, rtol=0)
    assert [a["class_index"] for a in answers] == expected.argmax(axis=1).tolist()
    assert [a["label"] for a in answers] == [MNIST.class_names[i] for i in expected.argmax(axis=1)]
    for answer, row in zip(answers, expected, strict=True):
        np.testing.assert_allclose(list(answer["probabilities"].values()), row, atol=TOLERANCE, rtol=0)


def test_a_checkpoint_whose_export_agrees_is_served_through_onnxruntime_with_keras_answers(
    client: TestClient, checkpoint: bytes, cache: PredictorCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment_id = submitted_and_succeeded(client, checkpoint)
    images = noise_digits(IMAGES)
    expected = keras_outputs(checkpoint, images)
    assert len(set(expected.argmax(axis=1).tolist())) > 1, "a network that answers one class for all proves nothing"
    through_onnx = predicted(client, experiment_id, images)
    assert served(cache).runtime == "onnx"
    assert isinstance(getattr(served(cache).batcher.call, "__self__", None), OnnxPredictor)  # what the calls run
    assert_answers(through_onnx, expected)
    raw = {"Content-Type": "image/png"}
    single = client.post(f"/experiments/{experiment_id}/predictions", content=images[0], headers=raw)
    assert single.status_code == 200, single.text
    assert_answers([single.json()], expected[:1])
    # The export it serves is the experiment's stored one: what GET .../exports/onnx downloads.
    made = get_export_cache().made
    download = client.get(f"/experiments/{experiment_id}/exports/onnx")
    assert download.status_code == 200 and get_export_cache().made == made
    # The same answers (keys, order, values to 1e-5) with Keras only.
    monkeypatch.setattr(get_settings(), "serving_runtime", "keras")
    cache._items.clear()
    through_keras = predicted(client, experiment_id, images)
    assert served(cache).runtime == "keras"
    assert_answers(through_keras, expected)
    for onnx_answer, keras_answer in zip(through_onnx, through_keras, strict=True):
        assert onnx_answer.keys() == keras_answer.keys()
        assert list(onnx_answer["probabilities"]) == list(keras_answer["probabilities"])


def store_onnx(experiment_id: int, content: bytes) -> None:
    """`content` as the experiment's stored ONNX export, as a download would have stored it."""
    with session_scope() as session:
        session.add(
            Artifact(
                experiment_id=experiment_id,
                name=FILES[ExportFormat.ONNX].name,
                media_type=FILES[ExportFormat.ONNX].media_type,
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                content=content,
            )
        )


def refusing_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_network: object, _folder: Path) -> bytes:
        raise ValueError("Unsupported ONNX op for layer 'dense'")

    monkeypatch.setattr(exports, "_onnx", refuse)


def other_input_export() -> bytes:
    """A real ONNX export of a network that takes 32x32 images: not the MNIST contract's [None, 28, 28]."""
    import keras

    network = keras.Sequential([keras.Input((32, 32)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CHECKPOINT_NAME
        network.save(path)
        return export_checkpoint(path.read_bytes(), ExportFormat.ONNX).content


def without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("disagrees", "differ from Keras' by up to"),
        ("another input", "takes tensor(float) ["),
        ("export fails", "could not be exported as onnx (ValueError: Unsupported ONNX op"),
        ("no onnxruntime", "onnxruntime is not installed"),
    ],
)
def test_a_checkpoint_onnxruntime_cannot_serve_as_keras_is_served_by_keras_with_the_same_answers(
    client: TestClient,
    checkpoint: bytes,
    other_checkpoint: bytes,
    cache: PredictorCache,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: str,
    reason: str,
) -> None:
    experiment_id = submitted_and_succeeded(client, checkpoint)
    if case == "disagrees":
        # A real ONNX graph with the right input, of another network: what a converter that got an op wrong gives.
        store_onnx(experiment_id, export_checkpoint(other_checkpoint, ExportFormat.ONNX).content)
    elif case == "another input":
        store_onnx(experiment_id, other_input_export())
    elif case == "export fails":
        refusing_exporter(monkeypatch)
    else:
        without_onnxruntime(monkeypatch)
    images = noise_digits(IMAGES)
    with caplog.at_level(logging.WARNING, logger="api.serving.runtimes"):
        answers = predicted(client, experiment_id, images)
    assert served(cache).runtime == "keras"
    assert_answers(answers, keras_outputs(checkpoint, images))
    (logged,) = [r.getMessage() for r in caplog.records if "with Keras" in r.getMessage()]
    assert f"of experiment {experiment_id} with Keras" in logged and reason in logged, logged


def test_the_probe_batch_would_tell_the_two_checkpoints_apart(checkpoint: bytes, other_checkpoint: bytes) -> None:
    """The mismatch case above is a real disagreement on the probe, not an accident of the images used."""
    from training.prediction import Predictor

    outputs = []
    for content in (checkpoint, other_checkpoint):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / CHECKPOINT_NAME
            path.write_bytes(content)
            outputs.append(Predictor.from_file(path, MNIST, Activation.SOFTMAX).predict_batch(probe_batch((28, 28))))
    assert float(np.max(np.abs(outputs[0] - outputs[1]))) > 100 * TOLERANCE


def test_concurrent_first_requests_export_a_checkpoint_once_and_a_reload_exports_it_no_more(
    client: TestClient, checkpoint: bytes, cache: PredictorCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two experiments with the same checkpoint bytes (a model registered twice, say): one export for both.
    experiments = [submitted_and_succeeded(client, checkpoint), submitted_and_succeeded(client, checkpoint)]
    image = noise_digits(1)
    exported: list[int] = []
    entered, release = threading.Event(), threading.Event()
    export = export_cache.export_checkpoint

    def held_export(content: bytes, fmt: ExportFormat) -> exports.Export:
        exported.append(1)
        entered.set()
        release.wait(timeout=30)  # the other first requests arrive while this export runs
        return export(content, fmt)

    callers = threading.Semaphore(0)
    get = PredictorCache.get

    def counting_get(self: PredictorCache, *args: Any) -> ServedModel:
        callers.release()
        return get(self, *args)

    requests = 8
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_cache, "export_checkpoint", held_export)
        patch.setattr(PredictorCache, "get", counting_get)
        with ThreadPoolExecutor(requests) as pool:
            futures = [pool.submit(predicted, client, experiments[i % 2], image) for i in range(requests)]
            assert entered.wait(timeout=60)
            for _ in range(requests):
                assert callers.acquire(timeout=30), "not every request reached the cache"
            release.set()
            answers = [future.result() for future in futures]
        assert exported == [1] and cache.loads == 1
        assert served(cache).runtime == "onnx"
        expected = keras_outputs(checkpoint, image)
        for answer in answers:
            assert_answers(answer, expected)
        # A fresh process (an empty network cache) serving the other experiment finds the stored export.
        fresh = PredictorCache(capacity=4)
        monkeypatch.setattr(predictors, "_cache", fresh)
        for experiment_id in reversed(experiments):
            fresh._items.clear()
            assert_answers(predicted(client, experiment_id, image), expected)
            assert served(fresh).runtime == "onnx"
        assert exported == [1]
