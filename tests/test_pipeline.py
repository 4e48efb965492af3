"""The fast paths compute what the plain ones do: decoded-image cache, one-pass evaluation, XLA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from training.data import TrainingData, decode_images, load_raw, load_splits, split_training
from training.evaluation import evaluate_network
from training.networks import accuracy_metric, build_network, compile_network
from training.runner import run_experiment
from training.spec import Dataset, ExperimentSpec


def spec(**fields: Any) -> ExperimentSpec:
    base = {"dataset": "mnist", "epochs": 2, "batch_size": 64, "train_size": 320, "validation": "test"}
    return ExperimentSpec.model_validate({**base, **fields})


CATS = {
    "dataset": "cats_vs_dogs",
    "head": {"units": 1, "activation": "sigmoid"},
    "loss": "binary_crossentropy",
    "batch_size": 8,
    "train_size": 24,
}


def test_decoded_images_train_on_exactly_the_pixels_decoded_every_epoch(data_dir: Path) -> None:
    cats = spec(**CATS)
    train, _ = split_training(load_raw(Dataset.CATS_VS_DOGS, data_dir)[0], cats)
    decoded = decode_images(train, cats)
    assert decoded is not None
    streamed = [(x.numpy(), y.numpy()) for x, y in TrainingData(train, cats, image_files=True).epochs(0, 2)]
    cached = [(x.numpy(), y.numpy()) for x, y in TrainingData(decoded, cats, image_files=False).epochs(0, 2)]
    assert len(streamed) == len(cached) == 2 * 3
    for (xs, ys), (xc, yc) in zip(streamed, cached, strict=True):
        assert np.array_equal(xs, xc)
        assert np.array_equal(ys, yc)


def test_one_pass_evaluation_matches_keras_evaluate(data_dir: Path) -> None:
    mnist = spec()
    splits = load_splits(mnist, data_dir)
    network = compile_network(build_network(mnist), mnist)
    network.fit(splits.train.epochs(0, 1), steps_per_epoch=splits.train.steps_per_epoch, verbose=0)
    keras_figures = network.evaluate(splits.test, verbose=0, return_dict=True)
    ours = evaluate_network(
        network,
        splits.test,
        splits.test_labels,
        list(mnist.info.class_names),
        loss=str(mnist.resolved_loss),
        accuracy=accuracy_metric(mnist),
    )
    assert ours.test_loss == pytest.approx(keras_figures["loss"], rel=1e-5)
    assert ours.test_accuracy == pytest.approx(keras_figures["accuracy"], abs=1e-7)
    matrix = np.array(ours.confusion_matrix)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(ours.test_accuracy, abs=1e-6)


def test_xla_trains_the_same_network_within_float_tolerance(data_dir: Path, tmp_path: Path) -> None:
    plain = run_experiment(spec(jit_compile=False), data_dir, tmp_path / "plain")
    compiled = run_experiment(spec(jit_compile=True), data_dir, tmp_path / "xla")
    for a, b in zip(plain.epochs, compiled.epochs, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-3)
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-3)
    assert plain.evaluation is not None and compiled.evaluation is not None
    assert compiled.evaluation.test_accuracy == pytest.approx(plain.evaluation.test_accuracy, abs=0.02)


def test_several_steps_per_call_train_exactly_the_same_batches(data_dir: Path, tmp_path: Path) -> None:
    # 320 examples in batches of 64: 5 steps an epoch, so 3 per call leaves a short last call each epoch;
    # a call that ran on into the next epoch's batches would change every figure after the first epoch.
    exact = spec(deterministic=True, epochs=3)
    progress: list[tuple[int, int, int]] = []
    one = run_experiment(exact, data_dir, tmp_path / "one", steps_per_execution=1)
    grouped = run_experiment(
        exact,
        data_dir,
        tmp_path / "grouped",
        steps_per_execution=3,
        on_progress=lambda epoch, done, total, loss, accuracy: progress.append((epoch, done, total)),
        progress_every_s=0,
    )
    assert [(e.loss, e.accuracy, e.val_loss, e.val_accuracy) for e in grouped.epochs] == [
        (e.loss, e.accuracy, e.val_loss, e.val_accuracy) for e in one.epochs
    ]
    assert one.evaluation is not None and grouped.evaluation is not None
    assert grouped.evaluation.confusion_matrix == one.evaluation.confusion_matrix
    assert grouped.evaluation.test_loss == one.evaluation.test_loss
    # Progress is heard after each call and never counts past the epoch's batches.
    assert progress == [(epoch, done, 5) for epoch in (1, 2, 3) for done in (3, 5)]


def test_xla_and_deterministic_ops_cannot_be_asked_together() -> None:
    with pytest.raises(ValueError, match="jit_compile and deterministic"):
        spec(jit_compile=True, deterministic=True)


def test_the_checkpoint_is_what_a_user_loads(data_dir: Path, tmp_path: Path) -> None:
    # XLA is a compile option, not part of the file: the downloaded network loads and predicts without it.
    result = run_experiment(spec(jit_compile=True, epochs=1), data_dir, tmp_path)
    assert result.checkpoint is not None
    network = keras.models.load_model(result.checkpoint, compile=False)
    assert network.output_shape == (None, 10)
