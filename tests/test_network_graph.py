"""The network language alone: every allowed layer, each kind of mistake, the arithmetic against Keras' own model,
the limits, the presets against the builders they replaced, and no way to name a Python object."""

from __future__ import annotations

import typing
from typing import Any

import keras
import numpy as np
import pytest
from pydantic import ValidationError

from training.graph import layers as L
from training.graph.build import build_graph
from training.graph.check import HeadShape, NetworkLimits, NetworkSummary, over_limits, summarize
from training.graph.network import EXAMPLE, MAX_LAYERS, GraphError, NetworkGraph
from training.graph.presets import PRESETS
from training.networks import build_network
from training.spec import ExperimentSpec, Network

IMAGE = (12, 12, 3)
CONV = {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"}
# One small network per allowed layer, the layer under test marked by its name "it".
ONE_OF_EACH: dict[str, list[dict[str, Any]]] = {
    "Dense": [{"type": "Flatten"}, {"type": "Dense", "units": 7, "activation": "tanh", "name": "it"}],
    # Dense on an image works on its last axis, as in Keras.
    "Dense_on_an_image": [{"type": "Dense", "units": 5, "use_bias": False, "name": "it"}, {"type": "Flatten"}],
    "Conv2D": [{**CONV, "strides": 2, "kernel_regularizer": {"l2": 0.01}, "name": "it"}, {"type": "Flatten"}],
    "SeparableConv2D": [
        {"type": "SeparableConv2D", "filters": 5, "kernel_size": [3, 2], "depth_multiplier": 2, "name": "it"},
        {"type": "Flatten"},
    ],
    "DepthwiseConv2D": [
        {"type": "DepthwiseConv2D", "kernel_size": 3, "dilation_rate": 2, "depth_multiplier": 3, "name": "it"},
        {"type": "Flatten"},
    ],
    "Conv2DTranspose": [
        {"type": "Conv2DTranspose", "filters": 2, "kernel_size": 3, "strides": 2, "name": "it"},
        {"type": "Flatten"},
    ],
    "MaxPooling2D": [{"type": "MaxPooling2D", "pool_size": 3, "strides": 2, "name": "it"}, {"type": "Flatten"}],
    "AveragePooling2D": [{"type": "AveragePooling2D", "padding": "same", "name": "it"}, {"type": "Flatten"}],
    "GlobalAveragePooling2D": [{"type": "GlobalAveragePooling2D", "name": "it"}],
    "GlobalMaxPooling2D": [{"type": "GlobalMaxPooling2D", "keepdims": True, "name": "it"}, {"type": "Flatten"}],
    "Flatten": [{"type": "Flatten", "name": "it"}],
    "Reshape": [{"type": "Reshape", "target_shape": [-1, 6], "name": "it"}, {"type": "Flatten"}],
    "Dropout": [{"type": "Dropout", "rate": 0.5, "name": "it"}, {"type": "Flatten"}],
    "SpatialDropout2D": [{"type": "SpatialDropout2D", "rate": 0.2, "name": "it"}, {"type": "Flatten"}],
    "BatchNormalization": [CONV, {"type": "BatchNormalization", "name": "it"}, {"type": "Flatten"}],
    "LayerNormalization": [{"type": "Flatten"}, {"type": "LayerNormalization", "scale": False, "name": "it"}],
    "Activation": [{"type": "Activation", "activation": "gelu", "name": "it"}, {"type": "Flatten"}],
    "Rescaling": [{"type": "Rescaling", "scale": 2.0, "offset": -1.0, "name": "it"}, {"type": "Flatten"}],
    "Resizing": [{"type": "Resizing", "height": 5, "width": 9, "name": "it"}, {"type": "Flatten"}],
    "Add": [
        {**CONV, "name": "a"},
        {**CONV, "name": "b", "inputs": ["input"]},
        {"type": "Add", "inputs": ["a", "b"], "name": "it"},
        {"type": "GlobalAveragePooling2D"},
    ],
    "Concatenate": [
        {**CONV, "name": "a"},
        {"type": "MaxPooling2D", "pool_size": 1, "name": "b", "inputs": ["input"]},
        {"type": "Concatenate", "inputs": ["a", "b"], "name": "it"},
        {"type": "GlobalMaxPooling2D"},
    ],
    "RandomFlip": [{"type": "RandomFlip", "mode": "horizontal", "name": "it"}, {"type": "Flatten"}],
    "RandomRotation": [{"type": "RandomRotation", "factor": [-0.1, 0.2], "name": "it"}, {"type": "Flatten"}],
    "RandomZoom": [
        {"type": "RandomZoom", "height_factor": 0.2, "fill_mode": "constant", "name": "it"},
        {"type": "Flatten"},
    ],
    "RandomTranslation": [
        {"type": "RandomTranslation", "height_factor": 0.1, "width_factor": [0.0, 0.2], "name": "it"},
        {"type": "Flatten"},
    ],
    "RandomContrast": [{"type": "RandomContrast", "factor": 0.3, "name": "it"}, {"type": "Flatten"}],
    # The smallest input Keras builds it for; each architecture is held to Keras below.
    "Backbone": [
        {"type": "Resizing", "height": 32, "width": 32},
        {"type": "Backbone", "architecture": "MobileNetV2", "pooling": "avg", "name": "it"},
    ],
}
# The Keras class a layer type builds, where the type is not Keras' own class name.
KERAS_CLASS = {"Backbone": "Functional"}
LAYER_CLASSES = {
    member.model_fields["type"].annotation.__args__[0]: member
    for member in typing.get_args(typing.get_args(L.Layer)[0])
}
LAYER_TYPES = sorted(LAYER_CLASSES)


def graph(layers: list[dict[str, Any]]) -> NetworkGraph:
    return NetworkGraph.model_validate({"layers": layers})


def checked(layers: list[dict[str, Any]], shape: tuple[int, ...] = IMAGE, head: int | None = 3) -> NetworkSummary:
    summary = summarize(graph(layers), shape, 8, HeadShape(head) if head else None)
    assert isinstance(summary, NetworkSummary), [str(e) for e in summary]
    return summary


def errors(layers: list[dict[str, Any]], shape: tuple[int, ...] = IMAGE) -> list[str]:
    found = summarize(graph(layers), shape, 8, HeadShape(3))
    assert isinstance(found, list), "the network was accepted"
    assert all(isinstance(e, GraphError) for e in found)
    return [str(e) for e in found]


def assert_equals_keras(summary: NetworkSummary, model: keras.Model) -> None:
    ours = {
        row.name: (KERAS_CLASS.get(row.type, row.type), tuple(row.output_shape), row.params, row.trainable_params)
        for row in summary.layers
    }
    theirs = {
        layer.name: (
            type(layer).__name__,
            tuple(layer.output.shape[1:]),
            layer.count_params(),
            sum(int(np.prod(w.shape)) for w in layer.trainable_weights),
        )
        for layer in model.layers
    }
    assert ours == theirs
    assert summary.figures.total_params == model.count_params()
    assert summary.figures.trainable_params == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_the_table_has_every_allowed_layer() -> None:
    assert sorted({kind.partition("_")[0] for kind in ONE_OF_EACH}) == sorted(LAYER_TYPES)
    assert len(LAYER_TYPES) == 26


@pytest.mark.parametrize("kind", sorted(ONE_OF_EACH))
def test_every_allowed_layer_builds_and_its_arithmetic_is_keras(kind: str) -> None:
    network = graph(ONE_OF_EACH[kind])
    summary = checked(ONE_OF_EACH[kind])
    model = build_graph(network, IMAGE, HeadShape(3), name="one")
    kind = kind.partition("_")[0]
    assert type(model.get_layer("it")).__name__ == KERAS_CLASS.get(kind, kind)
    assert_equals_keras(summary, model)
    # It runs, in training and in inference, on a batch of the checked shape.
    batch = np.random.default_rng(0).uniform(0, 255, (2, *IMAGE)).astype("float32")
    for training in (True, False):
        assert tuple(model(batch, training=training).shape) == (2, 3)


LAYERS: list[dict[str, Any]] = EXAMPLE["layers"]


def test_the_documented_example_and_a_residual_network_with_branches_equal_keras() -> None:
    assert_equals_keras(checked(LAYERS, (28, 28), 10), build_graph(graph(LAYERS), (28, 28), HeadShape(10), "x"))
    block: list[dict[str, Any]] = [
        {**CONV, "filters": 8, "name": "stem"},
        {"type": "BatchNormalization"},
        {"type": "Activation", "activation": "relu"},
        {**CONV, "filters": 8},
        {"type": "Add", "inputs": ["stem", "conv2d_3"], "name": "residual"},
        {"type": "SeparableConv2D", "filters": 4, "kernel_size": 1, "name": "left", "inputs": ["residual"]},
        {"type": "AveragePooling2D", "pool_size": 1, "name": "right", "inputs": ["residual"]},
        {"type": "Concatenate", "inputs": ["left", "right"], "axis": 3},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dropout", "rate": 0.1},
    ]
    summary = checked(block)
    assert_equals_keras(summary, build_graph(graph(block), IMAGE, HeadShape(3), "residual"))
    assert [row.inputs for row in summary.layers if row.name == "residual"] == [["stem", "conv2d_3"]]


def test_the_figures_by_hand() -> None:
    # 4x4x1 image -> Conv2D(2, 3x3, valid) -> 2x2x2 -> Flatten -> 8 -> head Dense(3)
    summary = checked([{"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "Flatten"}], (4, 4, 1))
    figures = summary.figures
    assert figures.total_params == (9 * 1 * 2 + 2) + (8 * 3 + 3)
    # rescaling (16) + conv 2 x (2*2*2 outputs x 9 multiply-adds) + flatten (8) + head 2 x (3 x 8)
    assert figures.flops_per_example == 16 + 2 * 8 * 9 + 8 + 2 * 24
    # image 16 + rescaling 16 + conv 8 + flatten 8 + head 3 = 51 values, x 8 examples x 4 bytes
    assert figures.activation_bytes_inference == 51 * 8 * 4
    assert figures.activation_bytes_training == 2 * 51 * 8 * 4
    bn = checked([CONV, {"type": "BatchNormalization"}, {"type": "Flatten"}], head=None).figures
    assert (bn.trainable_params, bn.non_trainable_params) == (4 * 9 * 3 + 4 + 2 * 4, 2 * 4)


@pytest.mark.parametrize(
    ("layers", "shape", "expected"),
    [
        (
            [CONV, {"type": "MaxPooling2D", "pool_size": 12}, {"type": "MaxPooling2D"}, {"type": "Flatten"}],
            IMAGE,
            "layers[2] MaxPooling2D: its input is 1x1x4, smaller than pool_size 2",
        ),
        (
            [{"type": "Conv2D", "filters": 2, "kernel_size": 5}, {"type": "Flatten"}],
            (3, 3, 1),
            "layers[0] Conv2D: its input is 3x3x1, smaller than kernel_size 5x5",
        ),
        (
            [{"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "Flatten"}],
            (28, 28),
            "layers[0] Conv2D: its input is 28x28, not an image (height x width x channels)",
        ),
        ([{"type": "RandomFlip"}, {"type": "Flatten"}], (28, 28), "add a Reshape with target_shape [28, 28, 1]"),
        (
            [{"type": "Reshape", "target_shape": [5, 5]}, {"type": "Flatten"}],
            IMAGE,
            "layers[0] Reshape: its input is 12x12x3 (432 values)",
        ),
        (
            [
                {**CONV, "name": "a"},
                {"type": "MaxPooling2D", "name": "b"},
                {"type": "Add", "inputs": ["a", "b"]},
                {"type": "Flatten"},
            ],
            IMAGE,
            "layers[2] Add: its inputs must have one shape; they are 12x12x4, 6x6x4",
        ),
        (
            [
                {**CONV, "name": "a"},
                {"type": "MaxPooling2D", "name": "b"},
                {"type": "Concatenate", "inputs": ["a", "b"]},
                {"type": "Flatten"},
            ],
            IMAGE,
            "layers[2] Concatenate: its inputs must agree on every axis but -1",
        ),
        (
            [{"type": "Concatenate", "inputs": ["input", "input"], "axis": 0}, {"type": "Flatten"}],
            IMAGE,
            "axis 0 is not an axis",
        ),
        ([CONV], IMAGE, "layers[0] Conv2D: the network's output is 12x12x4, and the head needs a vector"),
        (
            [{"type": "Flatten", "inputs": ["nowhere"]}],
            IMAGE,
            "layers[0] Flatten: its input 'nowhere' is not the name of any layer",
        ),
        (
            [
                {"type": "Flatten", "name": "a", "inputs": ["b"]},
                {"type": "Dense", "units": 2, "name": "b", "inputs": ["a"]},
            ],
            IMAGE,
            "its inputs form a cycle: ",
        ),
        (
            [{"type": "Flatten", "name": "a", "inputs": ["a"]}],
            IMAGE,
            "layers[0] Flatten 'a': its inputs form a cycle: a <- a",
        ),
        (
            [{"type": "Flatten", "name": "x"}, {"type": "Dense", "units": 2, "name": "x"}],
            IMAGE,
            "layers[1] Dense 'x': the name 'x' is already layers[0]'s",
        ),
        ([{"type": "Flatten", "name": "head"}], IMAGE, "the name 'head' is reserved"),
        ([CONV, {"type": "Add"}, {"type": "Flatten"}], IMAGE, "layers[1] Add: Add joins 2 or more layers"),
        (
            [{"type": "Flatten", "inputs": ["input", "input"]}],
            IMAGE,
            "layers[0] Flatten: Flatten takes one input; it is given 2",
        ),
        (
            [{"type": "Flatten", "name": "side"}, {"type": "Flatten", "inputs": ["input"]}],
            IMAGE,
            "layers[0] Flatten 'side': its output goes nowhere",
        ),
    ],
    ids=[
        "pool-too-small",
        "kernel-too-big",
        "conv-on-2d",
        "augment-on-2d",
        "reshape-size",
        "add-shapes",
        "concatenate-shapes",
        "concatenate-axis",
        "output-not-a-vector",
        "dangling-input",
        "cycle",
        "self-cycle",
        "duplicate-name",
        "reserved-name",
        "add-one-input",
        "two-inputs-to-flatten",
        "unused-output",
    ],
)
def test_each_mistake_names_the_layer_and_says_why(
    layers: list[dict[str, Any]], shape: tuple[int, ...], expected: str
) -> None:
    found = errors(layers, shape)
    assert any(expected in e for e in found), found


def test_keras_refuses_what_the_check_refuses() -> None:
    # The check's shape errors are Keras' own refusals, found without building anything.
    cases: list[tuple[list[dict[str, Any]], tuple[int, ...]]] = [
        ([CONV, {"type": "MaxPooling2D", "pool_size": 12}, {"type": "MaxPooling2D"}, {"type": "Flatten"}], IMAGE),
        ([{"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "Flatten"}], (28, 28)),
        ([{"type": "Reshape", "target_shape": [5, 5]}, {"type": "Flatten"}], IMAGE),
        ([{"type": "Backbone", "architecture": "ResNet50", "pooling": "max"}], (31, 64, 3)),
        # Refused before any download is tried.
        (
            [{"type": "Backbone", "architecture": "EfficientNetB0", "weights": "imagenet", "pooling": "avg"}],
            (32, 32, 1),
        ),
    ]
    for layers, shape in cases:
        with pytest.raises(ValueError):
            build_graph(graph(layers), shape, None, "refused")


@pytest.mark.parametrize(
    ("layer", "where"),
    [
        ({"type": "Lambda", "function": "x"}, "layers.1"),
        ({"type": "Dense", "units": 4, "kernel_constraint": "max_norm"}, "layers.1.Dense.kernel_constraint"),
        ({"type": "Dense", "units": 0}, "layers.1.Dense.units"),
        ({"type": "Dense", "units": 10**9}, "layers.1.Dense.units"),
        ({"type": "Dropout", "rate": 1.0}, "layers.1.Dropout.rate"),
        ({"type": "Conv2D", "filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, "layers.1.Conv2D"),
        ({"type": "Reshape", "target_shape": [-1, -1]}, "layers.1.Reshape"),
        ({"type": "RandomRotation", "factor": [0.3, 0.1]}, "layers.1.RandomRotation"),
        ({"type": "Rescaling", "scale": float("nan")}, "layers.1.Rescaling.scale"),
    ],
    ids=[
        "unknown-layer",
        "unknown-argument",
        "zero-units",
        "huge-units",
        "rate-1",
        "strided-dilated",
        "two-unknowns",
        "unordered-factor",
        "nan",
    ],
)
def test_a_bad_layer_or_argument_is_refused_where_it_is(layer: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as refused:
        graph([{"type": "Flatten"}, layer])
    located = [".".join(str(p) for p in e["loc"]) for e in refused.value.errors()]
    assert any(loc.startswith(where) for loc in located), located


def test_a_network_has_at_most_max_layers() -> None:
    with pytest.raises(ValidationError, match=f"at most {MAX_LAYERS}"):
        graph([{"type": "Dropout", "rate": 0.1}] * (MAX_LAYERS + 1))


SMUGGLED: list[Any] = [
    "keras.layers.Lambda",
    "builtins.eval",
    "os.system",
    "lambda x: __import__('os').system('id')",
    {"class_name": "Lambda", "config": {"function": "os.system"}},
    {"module": "keras.layers", "class_name": "Lambda", "config": {}, "registered_name": "Lambda"},
    ["keras.activations.relu"],
    print,
    keras.layers.Lambda,
]


def smuggling_targets() -> list[tuple[str, str]]:
    return [(kind, field) for kind in LAYER_TYPES for field in LAYER_CLASSES[kind].model_fields if field != "type"]


@pytest.mark.parametrize(("kind", "field"), smuggling_targets(), ids=lambda v: str(v))
def test_no_argument_of_any_layer_can_name_a_python_object(kind: str, field: str) -> None:
    base = next(layer for layer in ONE_OF_EACH[kind] if layer.get("name") == "it")  # a valid one to start from
    for value in SMUGGLED:
        with pytest.raises(ValidationError):
            NetworkGraph.model_validate({"layers": [{**base, field: value}]})


@pytest.mark.parametrize("value", [v for v in SMUGGLED if not callable(v)] + ["TFSMLayer", "Dense "])
def test_the_type_names_only_an_allowed_layer(value: Any) -> None:
    with pytest.raises(ValidationError):
        graph([{"type": value}])


def test_limits_refuse_a_network_over_them() -> None:
    figures = checked(ONE_OF_EACH["Conv2D"]).figures
    assert (
        over_limits(
            figures, NetworkLimits(figures.total_params, figures.flops_per_example, figures.activation_bytes_training)
        )
        == []
    )
    refused = over_limits(figures, NetworkLimits(figures.total_params - 1, figures.flops_per_example - 1, 1))
    assert len(refused) == 3
    assert "EPOCHAL_MAX_NETWORK_PARAMS" in refused[0] and f"{figures.total_params:,} parameters" in refused[0]
    assert "EPOCHAL_MAX_NETWORK_FLOPS" in refused[1]
    assert "EPOCHAL_MAX_NETWORK_ACTIVATION_BYTES" in refused[2]


def test_a_network_of_absurd_size_is_costed_without_being_built() -> None:
    # 2 x 10^12 parameters: the figures are Python integers, nothing is allocated.
    huge = [{"type": "Flatten"}] + [{"type": "Dense", "units": 2**20}] * 3
    figures = checked(huge, (4096, 4096, 3)).figures
    assert figures.total_params > 10**12
    assert over_limits(figures, NetworkLimits(params=10**8))


# The builders the presets replaced, kept here to hold the presets to them.
def _old_mlp(inputs: keras.KerasTensor) -> keras.KerasTensor:
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(512, activation="relu")(x)
    return keras.layers.Dense(128, activation="relu")(x)


def _old_convnet(inputs: keras.KerasTensor) -> keras.KerasTensor:
    x = inputs
    for filters in (32, 64, 128, 128):
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(512, activation="relu")(x)


def _old_build_network(spec: ExperimentSpec) -> keras.Model:
    head = spec.resolved_head
    inputs = keras.Input(shape=spec.info.input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = (_old_mlp if spec.resolved_network is Network.MLP else _old_convnet)(x)
    outputs = keras.layers.Dense(head.units, activation=str(head.activation), dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs, name=f"{spec.dataset}_{spec.resolved_network}")


def _config(layer: keras.layers.Layer) -> dict[str, Any]:
    config = layer.get_config()
    config.pop("name")  # the old builder's names came from Keras' process-wide counter (dense_57)
    return config


@pytest.mark.parametrize(
    "fields",
    [
        {"dataset": "mnist"},
        {"dataset": "fashion_mnist", "seed": 7},
        {"dataset": "cats_vs_dogs", "seed": 3},
        {"dataset": "cats_vs_dogs", "head": {"units": 1, "activation": "sigmoid"}},
    ],
    ids=["mnist-mlp", "fashion-mlp", "cats-convnet", "cats-convnet-sigmoid"],
)
def test_a_preset_builds_exactly_what_the_old_builder_built(fields: dict[str, Any]) -> None:
    spec = ExperimentSpec.model_validate(fields)
    keras.utils.set_random_seed(spec.seed)
    old = _old_build_network(spec)
    keras.utils.set_random_seed(spec.seed)
    new = build_network(spec)
    assert [type(layer).__name__ for layer in new.layers] == [type(layer).__name__ for layer in old.layers]
    assert [_config(layer) for layer in new.layers] == [_config(layer) for layer in old.layers]
    assert new.count_params() == old.count_params()
    assert len(new.weights) == len(old.weights)
    for mine, theirs in zip(new.weights, old.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    # The check's summary is the same network.
    preset = spec.resolved_network
    assert isinstance(preset, Network)
    summary = summarize(PRESETS[preset], spec.info.input_shape, 32, HeadShape(spec.resolved_head.units))
    assert isinstance(summary, NetworkSummary)
    assert_equals_keras(summary, new)
