"""The experiment spec: defaults, what is refused and why, label encoding, network shapes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from training.labels import TargetEncoding, encode_labels, predicted_classes, target_encoding
from training.spec import Activation, DatasetInfo, ExperimentSpec, Loss, Network, default_network_for

HOMEWORK_HEADS = [
    (1, "sigmoid", "binary_crossentropy"),
    (1, "sigmoid", "mse"),
    (2, "softmax", "categorical_crossentropy"),
    (2, "softmax", "mse"),
    (1, "relu", "mse"),
]


def spec(**fields: Any) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"dataset": "mnist", **fields})


def refusal(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        spec(**fields)
    return str(caught.value)


def test_defaults_follow_the_dataset() -> None:
    mnist = spec()
    assert mnist.network is Network.MLP
    assert (mnist.resolved_head.units, mnist.resolved_head.activation) == (10, Activation.SOFTMAX)
    assert mnist.loss is Loss.SPARSE_CATEGORICAL_CROSSENTROPY
    cats = spec(dataset="cats_vs_dogs")
    assert cats.network is Network.CONVNET
    assert cats.resolved_head.units == 2
    one_unit = spec(dataset="cats_vs_dogs", head={"units": 1, "activation": "sigmoid"})
    assert one_unit.loss is Loss.BINARY_CROSSENTROPY


@pytest.mark.parametrize(("units", "activation", "loss"), HOMEWORK_HEADS)
def test_every_homework_head_is_accepted_even_the_bad_ones(units: int, activation: str, loss: str) -> None:
    accepted = spec(dataset="cats_vs_dogs", head={"units": units, "activation": activation}, loss=loss)
    assert accepted.resolved_head.units == units
    assert accepted.loss == loss


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"dataset": "CIFAR 10"}, "names no dataset: give a built-in (mnist, fashion_mnist, cats_vs_dogs)"),
        ({"dataset": "mnist@2"}, "it has version 1 only"),
        ({"dataset": "cifar@2", "dataset_version": 3}, "give the version once"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"loss": "hinge"}, "loss"),
        ({"head": {"units": 10, "activation": "tanh"}}, "activation"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1001}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 100_000}, "batch_size"),
        ({"learning_rate": 0}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": -0.1}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": math.inf}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": math.nan}, "learning_rate must be a finite number > 0"),
        ({"head": {"units": 3, "activation": "softmax"}}, "head.units must be 10 for mnist"),
        ({"head": {"units": 1, "activation": "sigmoid"}}, "head.units must be 10 for mnist"),
        (
            {"dataset": "cats_vs_dogs", "head": {"units": 10, "activation": "softmax"}},
            "head.units must be 1 or 2 for cats_vs_dogs",
        ),
        (
            {
                "dataset": "cats_vs_dogs",
                "head": {"units": 1, "activation": "sigmoid"},
                "loss": "sparse_categorical_crossentropy",
            },
            "use 'binary_crossentropy' or 'mse'",
        ),
        ({"network": "convnet"}, "use network 'mlp'"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_what_cannot_run_is_refused_with_the_field_and_the_fix(fields: dict[str, Any], words: str) -> None:
    assert words in refusal(**fields)


def test_an_uploaded_dataset_is_checked_against_what_the_lookup_finds() -> None:
    unchecked = ExperimentSpec.model_validate({"dataset": "flowers@2", "epochs": 2})
    assert (unchecked.dataset, unchecked.dataset_version, unchecked.resolved) == ("flowers", 2, False)
    with pytest.raises(LookupError, match="was not checked"):
        _ = unchecked.info
    found: list[tuple[str, int | None]] = []

    def lookup(name: str, version: int | None) -> DatasetInfo:
        found.append((name, version))
        return DatasetInfo(
            "flowers", ("rose", "tulip", "daisy"), (64, 64, 3), Network.CONVNET, "test", "", 90, 2, "0" * 64
        )

    checked = ExperimentSpec.with_datasets(unchecked, lookup)
    assert found == [("flowers", 2)] and checked.resolved and checked.info.reference == "flowers@2"
    assert (checked.network, checked.resolved_head.units, checked.epochs) == (Network.CONVNET, 3, 2)
    with pytest.raises(ValueError, match=r"head\.units must be 3 for flowers"):
        ExperimentSpec.with_datasets({"dataset": "flowers", "head": {"units": 2, "activation": "softmax"}}, lookup)
    with pytest.raises(ValueError, match="train_size must be from 1 to 90 for flowers"):
        ExperimentSpec.with_datasets({"dataset": "flowers", "train_size": 91}, lookup)


def test_an_uploaded_datasets_default_network_follows_its_image_size() -> None:
    assert default_network_for((28, 28)) is Network.MLP
    assert default_network_for((32, 32, 3)) is Network.MLP  # too small for four convolution and pooling stages
    assert default_network_for((64, 64, 3)) is Network.CONVNET


def test_target_encoding_follows_head_and_loss() -> None:
    binary = spec(dataset="cats_vs_dogs", head={"units": 1, "activation": "sigmoid"}, loss="mse")
    sparse = spec(loss="sparse_categorical_crossentropy")
    one_hot = spec(dataset="cats_vs_dogs", head={"units": 2, "activation": "softmax"}, loss="mse")
    assert [target_encoding(s) for s in (binary, sparse, one_hot)] == [
        TargetEncoding.BINARY,
        TargetEncoding.SPARSE,
        TargetEncoding.ONE_HOT,
    ]
    labels = np.array([0, 1, 1])
    assert encode_labels(labels, TargetEncoding.BINARY, 2).tolist() == [[0.0], [1.0], [1.0]]
    assert encode_labels(labels, TargetEncoding.SPARSE, 2).tolist() == [0, 1, 1]
    assert encode_labels(labels, TargetEncoding.ONE_HOT, 2).tolist() == [[1, 0], [0, 1], [0, 1]]


def test_predicted_classes_threshold_one_unit_and_argmax_several() -> None:
    assert predicted_classes(np.array([[0.2], [0.5], [0.9], [3.0]])).tolist() == [0, 1, 1, 1]
    assert predicted_classes(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])).tolist() == [1, 0]


@pytest.mark.parametrize(("units", "activation", "loss"), HOMEWORK_HEADS)
def test_convnet_shapes_for_every_homework_head(units: int, activation: str, loss: str) -> None:
    from training.networks import build_network

    network = build_network(spec(dataset="cats_vs_dogs", head={"units": units, "activation": activation}, loss=loss))
    assert network.input_shape == (None, 150, 150, 3)
    assert network.output_shape == (None, units)
    assert network.layers[-1].get_config()["activation"] == activation
    # The classic small convnet of the course: about 3.45 million parameters with a 1-unit head.
    assert 3_400_000 < network.count_params() < 3_500_000


def test_mlp_is_the_homework_network() -> None:
    from training.networks import build_network

    network = build_network(spec())
    dense = [layer for layer in network.layers if layer.__class__.__name__ == "Dense"]
    assert [layer.units for layer in dense] == [512, 128, 10]
    assert [layer.get_config()["activation"] for layer in dense] == ["relu", "relu", "softmax"]
    assert network.input_shape == (None, 28, 28)


def test_the_default_learning_rate_is_the_optimizers_keras_default() -> None:
    import keras

    from training.networks import build_optimizer

    for optimizer in ("sgd", "sgd_nesterov", "adagrad", "rmsprop", "adadelta", "adam"):
        chosen = spec(optimizer=optimizer)
        assert chosen.learning_rate is None
        built = build_optimizer(chosen)
        keras_default = type(built)().learning_rate
        assert float(built.learning_rate) == pytest.approx(float(keras_default))
        assert chosen.resolved_learning_rate == pytest.approx(float(keras_default))
    assert spec(optimizer="adam", learning_rate=0.5).resolved_learning_rate == 0.5
    assert isinstance(build_optimizer(spec(optimizer="sgd_nesterov")), keras.optimizers.SGD)
