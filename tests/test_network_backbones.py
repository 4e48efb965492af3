"""The Backbone layer: keras.applications networks held to Keras' own, built once each with random weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from tests.test_network_graph import assert_equals_keras, checked, errors, graph
from training.graph.backbones import BACKBONES, MEASURED_AREA
from training.graph.build import build_graph
from training.graph.check import HeadShape, downloaded_weights
from training.graph.vocabulary import BackboneArchitecture

SMALLEST = (32, 32, 3)
ARCHITECTURES = [str(a) for a in BackboneArchitecture]


def backbone(architecture: str, **fields: Any) -> dict[str, Any]:
    return {"type": "Backbone", "architecture": architecture, "name": "bb", **fields}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def frozen(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]], keras.Model]:
    """Each architecture, frozen and average-pooled, built once through build.py on the smallest input."""
    layers = [backbone(request.param, trainable=False, pooling="avg")]
    return request.param, layers, build_graph(graph(layers), SMALLEST, HeadShape(3), "frozen")


def test_each_architecture_builds_and_its_summary_is_keras(
    frozen: tuple[str, list[dict[str, Any]], keras.Model],
) -> None:
    architecture, layers, model = frozen
    summary = checked(layers, SMALLEST)
    assert_equals_keras(summary, model)
    # The same as Keras' application on its own, for the same input.
    application = getattr(keras.applications, architecture)(
        include_top=False, weights=None, input_shape=SMALLEST, pooling="avg"
    )
    [row] = [row for row in summary.layers if row.name == "bb"]
    assert row.params == application.count_params()
    assert (
        tuple(row.output_shape)
        == tuple(application.output.shape[1:])
        == (BACKBONES[BackboneArchitecture(architecture)].channels,)
    )
    batch = np.random.default_rng(0).uniform(0, 255, (2, *SMALLEST)).astype("float32")
    assert tuple(model(batch, training=False).shape) == (2, 3)


def test_trainable_false_freezes_every_weight_of_the_backbone(
    frozen: tuple[str, list[dict[str, Any]], keras.Model],
) -> None:
    architecture, layers, model = frozen
    inner = model.get_layer("bb")
    assert inner.trainable_weights == [] and inner.count_params() > 0
    summary = checked(layers, SMALLEST)
    [row] = [row for row in summary.layers if row.name == "bb"]
    assert row.trainable_params == 0 and row.params == inner.count_params()
    # Only the head trains.
    channels = BACKBONES[BackboneArchitecture(architecture)].channels
    assert summary.figures.trainable_params == channels * 3 + 3


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_table_is_keras_for_any_channels_and_side_and_trainable(architecture: str) -> None:
    # One channel, sides that are not multiples of 32, no pooling: the per-channel weights and the rounding up.
    shape = (33, 70, 1)
    layers = [backbone(architecture), {"type": "GlobalMaxPooling2D"}]
    model = build_graph(graph(layers), shape, HeadShape(2), "grey")
    summary = checked(layers, shape, head=2)
    assert_equals_keras(summary, model)
    [row] = [row for row in summary.layers if row.name == "bb"]
    assert tuple(row.output_shape) == (2, 3, BACKBONES[BackboneArchitecture(architecture)].channels)
    assert 0 < row.trainable_params < row.params


def keras_flops_and_inner_values(model: keras.Model) -> tuple[int, int]:
    """The service's convention measured on a built application (as training/graph/backbones.py was)."""
    flops = inner = 0
    for layer in model.layers[1:]:
        out = math.prod(layer.output.shape[1:])
        inner += out
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            flops += 2 * out * math.prod(layer.kernel.shape[:2])
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            flops += 2 * out * math.prod(layer.kernel.shape[:-1])
        else:
            flops += out
    return flops, inner - math.prod(model.output.shape[1:])


def test_flops_and_activations_are_the_table_scaled_by_area(
    frozen: tuple[str, list[dict[str, Any]], keras.Model],
) -> None:
    architecture, _, model = frozen
    figures = BACKBONES[BackboneArchitecture(architecture)]
    pooled = checked([backbone(architecture, pooling="avg")], (224, 448, 3), head=None).figures
    channels = figures.channels
    rescaled = 224 * 448 * 3
    assert pooled.flops_per_example == rescaled + 2 * figures.flops_at_224 + channels
    values = 2 * rescaled + 2 * figures.inner_values_at_224 + 7 * 14 * channels + channels
    assert pooled.activation_bytes_inference == values * 8 * 4  # checked() sums a batch of 8
    # At 32x32 the scaling is an approximation of what Keras' layers hold: within a factor of 2.
    flops, inner = keras_flops_and_inner_values(model.get_layer("bb"))
    small = 32 * 32
    assert 0.5 < figures.flops_at_224 * small / MEASURED_AREA / flops < 2
    assert 0.5 < figures.inner_values_at_224 * small / MEASURED_AREA / inner < 2


@pytest.mark.parametrize(
    ("layers", "shape", "expected"),
    [
        (
            [backbone("ResNet50", pooling="avg")],
            (31, 64, 3),
            "layers[0] Backbone 'bb': its input is 31x64x3, smaller than ResNet50's minimum of 32x32 (Keras' own): "
            "add a Resizing to at least 32x32 before it",
        ),
        (
            [{"type": "Resizing", "height": 32, "width": 32}, backbone("MobileNetV2", weights="imagenet")],
            (28, 28, 1),
            "layers[1] Backbone 'bb': its input has 1 channel, and imagenet weights take 3 (RGB)",
        ),
        (
            [backbone("EfficientNetB0", pooling="max")],
            (28, 28),
            "layers[0] Backbone 'bb': its input is 28x28, not an image",
        ),
    ],
    ids=["too-small", "grey-imagenet", "not-an-image"],
)
def test_an_input_keras_refuses_is_refused_naming_the_layer(
    layers: list[dict[str, Any]], shape: tuple[int, ...], expected: str
) -> None:
    found = errors(layers, shape)
    assert any(expected in e for e in found), found


def test_grey_images_made_rgb_take_imagenet_weights_and_those_are_the_downloads() -> None:
    layers: list[dict[str, Any]] = [
        {"type": "Reshape", "target_shape": [28, 28, 1]},
        {"type": "Resizing", "height": 32, "width": 32, "name": "grey"},
        {"type": "Concatenate", "inputs": ["grey", "grey", "grey"]},
        backbone("MobileNetV2", weights="imagenet", pooling="avg"),
    ]
    summary = checked(layers, (28, 28), head=10)
    assert [row.output_shape for row in summary.layers if row.name == "concatenate_2"] == [[32, 32, 3]]
    [download] = downloaded_weights(graph(layers))
    assert (download.index, download.name) == (3, "bb") and "EPOCHAL_WORKERS_OFFLINE" in download.message
    assert downloaded_weights(graph([backbone("MobileNetV2", pooling="avg")])) == []


def test_a_backbone_network_survives_the_checkpoint_the_worker_saves_and_the_api_loads(
    frozen: tuple[str, list[dict[str, Any]], keras.Model], tmp_path: Path
) -> None:
    _, _, model = frozen
    model.save(tmp_path / "best_model.h5", include_optimizer=False)  # as training/runner.py saves it
    loaded = keras.models.load_model(tmp_path / "best_model.h5", compile=False)
    assert loaded.count_params() == model.count_params()
    assert loaded.get_layer("bb").trainable_weights == []
    batch = np.random.default_rng(1).uniform(0, 255, (2, *SMALLEST)).astype("float32")
    np.testing.assert_allclose(loaded(batch, training=False), model(batch, training=False), atol=1e-5)
