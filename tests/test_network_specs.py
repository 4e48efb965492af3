"""A spec's network as a graph: checked at submit, stored with the experiment, trained by a real worker."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import keras
import numpy as np
import pytest
from PIL import Image

from tests.support import Service, running_service, wait_until_finished
from training.graph.network import NetworkGraph

pytestmark = pytest.mark.e2e

QUEUE = "graphs"
PARAMS_LIMIT = 30_000  # above the small convnet's 21,930 parameters, below the wide one's
CONVNET: dict[str, Any] = {
    "layers": [
        {"type": "Reshape", "target_shape": [28, 28, 1]},
        # Augmentation trains on shifted digits and is the identity at inference: the prediction below checks both.
        {"type": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1},
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
        {"type": "BatchNormalization"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 16, "activation": "relu"},
    ]
}
# 13 x 13 x 8 = 1352 inputs to the Dense: with 64 units the network has 87,354 parameters, over the limit.
WIDE = {"layers": [*CONVNET["layers"][:-1], {"type": "Dense", "units": 64, "activation": "relu"}]}


def digit_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from tests.support import empty_all_tables

    empty_all_tables()
    env = {"EPOCHAL_MAX_NETWORK_PARAMS": str(PARAMS_LIMIT)}
    with running_service(tmp_path_factory.mktemp("service"), QUEUE, ["graphs1"], env=env) as running:
        yield running


@pytest.fixture(scope="module")
def http(service: Service) -> Iterator[httpx.Client]:
    with service.http() as client:
        yield client


def spec(network: Any) -> dict[str, Any]:
    return {"dataset": "mnist", "network": network, "epochs": 1, "batch_size": 64, "train_size": 256}


def test_a_batch_norm_convnet_graph_with_augmentation_trains_predicts_and_is_stored_as_submitted(
    http: httpx.Client, service: Service, tmp_path: Path
) -> None:
    response = http.post("/experiments", json=spec(CONVNET))
    assert response.status_code == 202, response.text
    experiment_id = response.json()["id"]
    [final] = wait_until_finished(http, [experiment_id], timeout_s=600, service=service)
    assert final["status"] == "succeeded", final.get("error")
    assert final["summary"]["test_accuracy"] is not None
    assert NetworkGraph.model_validate(final["network"]) == NetworkGraph.model_validate(CONVNET)
    stored = http.get(f"/experiments/{experiment_id}").json()["network"]
    assert NetworkGraph.model_validate(stored) == NetworkGraph.model_validate(CONVNET)
    download = http.get(f"/experiments/{experiment_id}/artifacts/best_model.h5")
    assert download.status_code == 200
    (tmp_path / "best.h5").write_bytes(download.content)
    network = keras.models.load_model(tmp_path / "best.h5", compile=False)
    kinds = [type(layer).__name__ for layer in network.layers]
    assert {"BatchNormalization", "Conv2D", "RandomTranslation"} <= set(kinds)
    assert network.count_params() == 21_930
    # The API's prediction is the downloaded network's, in inference mode (no translation of the image).
    # A white stroke on black, as MNIST digits are (the API turns a dark-on-light picture around first).
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[6:9, 7:22], pixels[6:24, 13:16] = 255, 255
    answer = http.post(
        f"/experiments/{experiment_id}/predictions", files={"file": ("d.png", digit_png(pixels), "image/png")}
    )
    assert answer.status_code == 200, answer.text
    expected = network(pixels[None].astype("float32"), training=False).numpy()[0]
    assert answer.json()["class_index"] == int(np.argmax(expected))
    assert answer.json()["probabilities"][answer.json()["label"]] == pytest.approx(float(expected.max()), abs=1e-5)


def test_a_graph_that_does_not_fit_the_input_is_a_422_naming_the_layer(http: httpx.Client) -> None:
    bad = {"layers": [CONVNET["layers"][0], {"type": "MaxPooling2D", "pool_size": 64}, {"type": "Flatten"}]}
    response = http.post("/experiments", json=spec(bad))
    assert response.status_code == 422, response.text
    assert "layers[1] MaxPooling2D" in response.json()["message"]


def test_a_graph_over_the_deployments_limits_is_a_422_naming_the_setting(http: httpx.Client) -> None:
    response = http.post("/experiments", json=spec(WIDE))
    assert response.status_code == 422, response.text
    message = str(response.json().get("message") or response.json()["detail"])
    assert "EPOCHAL_MAX_NETWORK_PARAMS" in message and "87,354" in message
    sweep = http.post("/sweeps", json={"base": spec(WIDE), "grid": {"optimizer": ["adam", "sgd"]}})
    assert sweep.status_code == 422 and "EPOCHAL_MAX_NETWORK_PARAMS" in sweep.text, sweep.text  # the same limits


def test_imagenet_weights_are_refused_for_every_run_of_a_sweep_while_workers_are_offline(http: httpx.Client) -> None:
    # The service runs with EPOCHAL_WORKERS_OFFLINE at its default (true): no worker here reaches the internet.
    backbone = {"type": "Backbone", "architecture": "EfficientNetB0", "weights": "imagenet", "pooling": "avg"}
    base = {**spec({"layers": [backbone]}), "dataset": "cats_vs_dogs"}
    sweep = http.post("/sweeps", json={"base": base, "grid": {"optimizer": ["adam", "sgd"]}})
    assert sweep.status_code == 422, sweep.text
    assert "layers[0] Backbone" in sweep.text and "EPOCHAL_WORKERS_OFFLINE" in sweep.text
    # With random weights the same network is accepted as far as the limits (its 4 million parameters are over
    # this service's EPOCHAL_MAX_NETWORK_PARAMS), which says the refusal above was the weights'.
    random = http.post("/experiments", json={**base, "network": {"layers": [{**backbone, "weights": None}]}})
    assert random.status_code == 422 and "EPOCHAL_MAX_NETWORK_PARAMS" in random.text, random.text
