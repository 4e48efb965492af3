"""Fit a network for a spec, keep the best checkpoint by validation accuracy, evaluate it on the test split."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from training.data import load_splits
from training.evaluation import evaluate_network
from training.networks import build_network, compile_network
from training.results import CHECKPOINT_NAME, EpochResult, RunResult, finite_or_none
from training.spec import ExperimentSpec


class _EpochReporter(keras.callbacks.Callback):
    """Reports every finished epoch, saves the best checkpoint, and stops when asked to."""

    def __init__(
        self,
        checkpoint: Path,
        on_epoch_end: Callable[[EpochResult], None],
        should_stop: Callable[[], bool],
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.on_epoch_end_callback = on_epoch_end
        self.should_stop = should_stop
        self.results: list[EpochResult] = []
        self.best_epoch: int | None = None
        self.best_val_accuracy = -math.inf
        self.cancelled = False
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        result = EpochResult(
            epoch=epoch + 1,
            loss=finite_or_none(logs["loss"]),
            accuracy=finite_or_none(logs["accuracy"]),
            val_loss=finite_or_none(logs["val_loss"]),
            val_accuracy=finite_or_none(logs["val_accuracy"]),
            seconds=time.perf_counter() - self._started,
        )
        # Strictly better only, so ties keep the earlier (cheaper) epoch; a diverged epoch never counts as better.
        val_accuracy = -math.inf if result.val_accuracy is None else result.val_accuracy
        if self.best_epoch is None or val_accuracy > self.best_val_accuracy:
            self.best_epoch, self.best_val_accuracy = result.epoch, val_accuracy
            # No optimizer state: the file is for inference, and it is a third of the size.
            self.model.save(self.checkpoint, include_optimizer=False)
        self.results.append(result)
        self.on_epoch_end_callback(result)
        if self.should_stop():
            self.cancelled = True
            self.model.stop_training = True


def run_experiment(
    spec: ExperimentSpec,
    data_dir: Path,
    workdir: Path,
    on_epoch_end: Callable[[EpochResult], None] = lambda result: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    """Train `spec` to completion (or until `should_stop`), then evaluate the best checkpoint on the test split."""
    keras.utils.set_random_seed(spec.seed)
    splits = load_splits(spec, data_dir)
    network = compile_network(build_network(spec), spec)
    reporter = _EpochReporter(workdir / CHECKPOINT_NAME, on_epoch_end, should_stop)
    network.fit(
        splits.train,
        validation_data=splits.validation,
        epochs=spec.epochs,
        callbacks=[reporter],
        shuffle=False,  # the pipeline already reshuffles each epoch with the spec's seed
        verbose=0,
    )
    if reporter.cancelled:
        return RunResult(reporter.results, True, reporter.best_epoch, None, None)
    best = compile_network(keras.models.load_model(reporter.checkpoint, compile=False), spec)
    evaluation = evaluate_network(best, splits.test, splits.test_labels, list(spec.info.class_names))
    return RunResult(reporter.results, False, reporter.best_epoch, reporter.checkpoint, evaluation)
