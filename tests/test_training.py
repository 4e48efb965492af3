"""`training/` alone: real Keras fits on small slices, evaluation, checkpoints, cancellation, missing data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from training.data import load_splits
from training.errors import DatasetUnavailable
from training.evaluation import summarize_predictions
from training.labels import predicted_classes
from training.results import EpochResult
from training.runner import run_experiment
from training.spec import ExperimentSpec


def spec(**fields: Any) -> ExperimentSpec:
    base = {"dataset": "mnist", "optimizer": "adam", "epochs": 2, "batch_size": 64, "train_size": 400}
    return ExperimentSpec.model_validate({**base, **fields})


@pytest.fixture(scope="module")
def mnist_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[EpochResult]]:
    seen: list[EpochResult] = []
    # Selected on the test split on purpose (the course's way): the evaluation test below relies on it.
    result = run_experiment(
        spec(validation="test"),
        data_dir,
        tmp_path_factory.mktemp("run"),
        on_epoch_end=lambda epoch, _point: seen.append(epoch),
    )
    return result, seen


def test_fit_reports_every_epoch_and_learns(mnist_run: tuple[Any, list[EpochResult]]) -> None:
    result, seen = mnist_run
    assert [e.epoch for e in seen] == [1, 2]
    assert seen == result.epochs
    assert all(e.seconds > 0 for e in seen)
    assert seen[-1].loss is not None and seen[0].loss is not None and seen[-1].val_accuracy is not None
    assert seen[-1].loss < seen[0].loss
    # Ten classes: chance is 0.1; even 400 examples and two epochs are well above it.
    assert seen[-1].val_accuracy > 0.3


def test_best_checkpoint_is_the_best_validation_epoch(mnist_run: tuple[Any, list[EpochResult]]) -> None:
    result, seen = mnist_run
    assert all(e.val_accuracy is not None for e in seen)  # every epoch validated: none may be passed over
    best = max(seen, key=lambda e: e.val_accuracy or 0.0)
    assert result.best_epoch == best.epoch
    assert result.best_val_accuracy == best.val_accuracy
    assert result.checkpoint.name == "best_model.h5"
    network = keras.models.load_model(result.checkpoint, compile=False)
    assert network.output_shape == (None, 10)


def test_evaluation_is_consistent_with_the_checkpoints_predictions(
    mnist_run: tuple[Any, list[EpochResult]], data_dir: Path
) -> None:
    result, _ = mnist_run
    evaluation = result.evaluation
    splits = load_splits(spec(validation="test"), data_dir)
    network = keras.models.load_model(result.checkpoint, compile=False)
    predicted = predicted_classes(network.predict(splits.test, verbose=0))
    matrix = np.array(evaluation.confusion_matrix)
    assert matrix.sum() == len(splits.test_labels)
    assert matrix.tolist() == summarize_predictions(splits.test_labels, predicted, evaluation.labels)[0]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(evaluation.test_accuracy, abs=1e-6)
    # Validation is the test split when asked for ("test"): the best epoch's figure is the test figure.
    assert evaluation.test_accuracy == pytest.approx(result.best_val_accuracy, abs=1e-6)
    report = evaluation.classification_report
    assert report["accuracy"] == pytest.approx(evaluation.test_accuracy, abs=1e-6)
    for index, name in enumerate(evaluation.labels):
        assert report[name]["support"] == matrix[index].sum()
        column = matrix[:, index].sum()
        expected_precision = matrix[index, index] / column if column else 0.0
        assert report[name]["precision"] == pytest.approx(expected_precision)
    assert {"macro avg", "weighted avg"} <= report.keys()


def test_cats_vs_dogs_one_sigmoid_unit_streams_images_and_evaluates(data_dir: Path, tmp_path: Path) -> None:
    cats = spec(
        dataset="cats_vs_dogs",
        head={"units": 1, "activation": "sigmoid"},
        loss="binary_crossentropy",
        epochs=1,
        batch_size=16,
        train_size=32,
    )
    result = run_experiment(cats, data_dir, tmp_path)
    assert result.evaluation is not None
    matrix = np.array(result.evaluation.confusion_matrix)
    assert result.evaluation.labels == ["cat", "dog"]
    assert matrix.shape == (2, 2)
    assert matrix.sum() == len(load_splits(cats, data_dir).test_labels)


def test_should_stop_cancels_after_the_current_epoch(data_dir: Path, tmp_path: Path) -> None:
    seen: list[EpochResult] = []
    result = run_experiment(
        spec(epochs=5),
        data_dir,
        tmp_path,
        on_epoch_end=lambda epoch, _point: seen.append(epoch),
        should_stop=lambda: True,
    )
    assert result.cancelled
    assert [e.epoch for e in seen] == [1]
    assert result.evaluation is None


def test_validation_split_holds_out_training_data(data_dir: Path) -> None:
    splits = load_splits(spec(validation_split=0.25), data_dir)
    assert (splits.train_count, splits.validation_count) == (300, 100)
    assert splits.validation is not splits.test


@pytest.mark.parametrize(
    ("fields", "encoded"),
    [
        ({"dataset": "cats_vs_dogs", "head": {"units": 1, "activation": "relu"}, "loss": "mse"}, (None, 1)),
        ({"dataset": "cats_vs_dogs", "head": {"units": 2, "activation": "softmax"}, "loss": "mse"}, (None, 2)),
        ({"loss": "sparse_categorical_crossentropy"}, (None,)),
    ],
)
def test_pipelines_carry_targets_encoded_for_the_head(
    data_dir: Path, fields: dict[str, Any], encoded: tuple[int | None, ...]
) -> None:
    splits = load_splits(spec(batch_size=4, train_size=8, **fields), data_dir)
    assert tuple(splits.train.epochs(0, 1).element_spec[1].shape) == encoded


def test_missing_data_offline_says_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    def offline(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("network is unreachable")

    # The one thing that cannot be real here: the public download (the machine may or may not be online).
    monkeypatch.setattr(tf.keras.datasets.mnist, "load_data", offline)
    monkeypatch.setattr(tf.keras.utils, "get_file", offline)
    with pytest.raises(DatasetUnavailable, match=r"mnist.npz.*EPOCHAL_DATA_DIR"):
        load_splits(spec(), tmp_path)
    with pytest.raises(DatasetUnavailable, match=r"train/\{cats,dogs\}.*EPOCHAL_DATA_DIR"):
        load_splits(spec(dataset="cats_vs_dogs"), tmp_path)
