"""Fit a network for a spec, keep the best checkpoint by validation accuracy, evaluate it on the test split.

A run can start from a `ResumePoint` (the state after some finished epoch) and reports one after every
epoch it finishes, so a job interrupted at any moment continues where it was instead of starting over.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from training.data import load_splits
from training.evaluation import evaluate_network
from training.labels import class_weights
from training.networks import (
    accuracy_metric,
    build_loss,
    build_network,
    compile_network,
    default_jit_compile,
    default_steps_per_execution,
)
from training.results import CHECKPOINT_NAME, EpochResult, ResumePoint, RunResult, StopReason, finite_or_none
from training.resume import capture_state, restore_state
from training.schedules import ControlState, TrainingControls
from training.spec import ExperimentSpec

EpochCallback = Callable[[EpochResult, ResumePoint], None]
# (epoch, batches done in it, batches per epoch, running loss, running accuracy), at most every progress_every_s.
ProgressCallback = Callable[[int, int, int, float | None, float | None], None]


class _EpochReporter(keras.callbacks.Callback):
    """Reports every finished epoch with its resume point, keeps the best checkpoint, and stops when asked to."""

    def __init__(
        self,
        checkpoint: Path,
        controls: TrainingControls,
        on_epoch_end: EpochCallback,
        should_stop: Callable[[], bool],
        interrupted: Callable[[], bool],
        on_progress: ProgressCallback | None = None,
        steps_per_epoch: int = 0,
        progress_every_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.controls = controls
        self.learning_rates: list[float] = []  # the rate the optimizer trained each reported epoch at
        self.on_progress = on_progress
        self.steps_per_epoch = steps_per_epoch
        self.progress_every_s = progress_every_s
        self._epoch = 0
        self._last_progress = 0.0
        self.on_epoch_end_callback = on_epoch_end
        self.should_stop = should_stop
        self.interrupted = interrupted
        self.results: list[EpochResult] = []
        self.best_epoch: int | None = None
        self.best_val_accuracy = -math.inf
        self.stopped: StopReason | None = None
        self._started = 0.0

    def resume_from(self, point: ResumePoint, best_checkpoint: bytes | None, controls: dict[str, Any] | None) -> None:
        if controls is not None:
            self.controls.state = ControlState.from_json(controls)
        self.best_epoch = point.best_epoch
        self.best_val_accuracy = -math.inf if point.best_val_accuracy is None else point.best_val_accuracy
        if best_checkpoint is not None:
            self.checkpoint.write_bytes(best_checkpoint)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = self._last_progress = time.perf_counter()
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Checked per batch so a shutdown never waits for a long epoch; the partial epoch is dropped below.
        if self.interrupted():
            self.stopped = StopReason.INTERRUPTED
            self.model.stop_training = True
        now = time.perf_counter()
        if self.on_progress is not None and now - self._last_progress >= self.progress_every_s:
            self._last_progress = now
            logs = logs or {}
            loss, accuracy = logs.get("loss"), logs.get("accuracy")
            self.on_progress(
                self._epoch,
                # With several steps per call, Keras names the call's last step, which can pass the epoch's end.
                min(batch + 1, self.steps_per_epoch),
                self.steps_per_epoch,
                None if loss is None else finite_or_none(loss),
                None if accuracy is None else finite_or_none(accuracy),
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stopped is StopReason.INTERRUPTED:
            return  # Keras ends a stopped epoch as if it were complete: it is not, so it is not reported
        logs = logs or {}
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))  # what this epoch trained at
        result = EpochResult(
            epoch=epoch + 1,
            loss=finite_or_none(logs["loss"]),
            accuracy=finite_or_none(logs["accuracy"]),
            val_loss=finite_or_none(logs["val_loss"]),
            val_accuracy=finite_or_none(logs["val_accuracy"]),
            seconds=time.perf_counter() - self._started,
            learning_rate=rate,
        )
        # Strictly better only, so ties keep the earlier (cheaper) epoch; a diverged epoch never counts as better.
        val_accuracy = -math.inf if result.val_accuracy is None else result.val_accuracy
        best_checkpoint = None
        if self.best_epoch is None or val_accuracy > self.best_val_accuracy:
            self.best_epoch, self.best_val_accuracy = result.epoch, val_accuracy
            # No optimizer state: the file is for inference, and it is a third of the size.
            self.model.save(self.checkpoint, include_optimizer=False)
            best_checkpoint = self.checkpoint.read_bytes()
        # After the checkpoint: early stopping decides when to stop, never which epoch is best.
        stop_early = self.controls.end_epoch(epoch, dataclasses.asdict(result))
        point = ResumePoint(
            epoch=result.epoch,
            state=capture_state(self.model, self.controls.state.to_json() if self.controls.active else None),
            best_epoch=self.best_epoch,
            best_val_accuracy=finite_or_none(self.best_val_accuracy),
            best_checkpoint=best_checkpoint,
        )
        self.results.append(result)
        self.learning_rates.append(rate)
        self.on_epoch_end_callback(result, point)
        if stop_early:
            self.model.stop_training = True
        if self.should_stop():
            self.stopped = StopReason.CANCELLED
            self.model.stop_training = True


def _on_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _set_op_determinism(on: bool) -> None:
    # A process-wide TensorFlow switch, set for every run: left on by a deterministic run, it would also
    # make Keras quietly drop XLA for every later run in the same process.
    from tensorflow.python.framework import config as tf_config

    if on:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def resolved_jit_compile(spec: ExperimentSpec, on_gpu: bool) -> bool:
    """The spec's jit_compile, or the faster choice for its network on this process' devices."""
    if spec.jit_compile is not None:
        return spec.jit_compile
    return default_jit_compile(spec, on_gpu=on_gpu)


def run_experiment(
    spec: ExperimentSpec,
    data_dir: Path,
    workdir: Path,
    on_epoch_end: EpochCallback = lambda result, point: None,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    interrupted: Callable[[], bool] = lambda: False,
    resume: ResumePoint | None = None,
    on_split: Callable[[int, int], None] = lambda train_count, validation_count: None,
    on_progress: ProgressCallback | None = None,
    progress_every_s: float = 1.0,
    steps_per_execution: int | None = None,
    packed: Path | None = None,
    on_content_hash: Callable[[str], None] = lambda sha256: None,
) -> RunResult:
    """Train `spec` to completion (or until stopped), then evaluate the best checkpoint on the test split.

    `resume` continues after its epoch with its weights, optimizer state and best checkpoint; the data
    order depends on (seed, epoch) only, so the batches are those an uninterrupted run would see.
    `should_stop` is read at each epoch end (cancel); `interrupted` after each batch (shutdown).
    `on_split` hears how many examples train and validate, once the data is split and before training.
    `on_progress` hears how far the current epoch is, at most every `progress_every_s`, with the running
    loss and accuracy. `steps_per_execution` (batches per compiled call) defaults to the faster choice
    for the network and device; it does not change what is computed. `packed` is the packed arrays of an uploaded
    dataset (training/packed.py); a built-in's data is read from `data_dir`, and `on_content_hash` hears the content
    sha256 of what was read (training/builtin_content.py), once, before training.
    """
    keras.utils.set_random_seed(spec.seed)
    _set_op_determinism(spec.deterministic)
    splits = load_splits(spec, data_dir, packed)
    if splits.content_sha256 is not None:
        on_content_hash(splits.content_sha256)
    on_split(splits.train_count, splits.validation_count)
    workdir.mkdir(parents=True, exist_ok=True)
    on_gpu = _on_gpu()
    controls = TrainingControls(spec)
    weights = class_weights(spec, splits.train.data.labels)
    network = compile_network(
        build_network(spec),
        spec,
        jit_compile=resolved_jit_compile(spec, on_gpu),
        steps_per_execution=steps_per_execution or default_steps_per_execution(spec, on_gpu=on_gpu),
    )
    reporter = _EpochReporter(
        workdir / CHECKPOINT_NAME,
        controls,
        on_epoch_end,
        should_stop,
        interrupted,
        on_progress=on_progress,
        steps_per_epoch=splits.train.steps_per_epoch,
        progress_every_s=progress_every_s,
    )
    first_epoch = 0
    if resume is not None:
        reporter.resume_from(resume, resume.best_checkpoint, restore_state(network, resume.state))
        first_epoch = resume.epoch
    for epoch in range(first_epoch, spec.epochs):
        if controls.stopped_early_at is not None:
            break  # stopped early before the resume point: nothing is left to train
        rate = controls.learning_rate(epoch)
        if rate is not None:
            network.optimizer.learning_rate = rate
        # One fit() per epoch over exactly that epoch's batches: with several steps per compiled call, a
        # stream of all epochs would let an epoch's last call run on into the next epoch's batches.
        network.fit(
            splits.train.epochs(epoch, epoch + 1),
            steps_per_epoch=splits.train.steps_per_epoch,
            initial_epoch=epoch,
            epochs=epoch + 1,
            validation_data=splits.validation,
            callbacks=[reporter],
            # Only where the spec weighs classes: fit without the argument trains exactly as before it existed.
            **({} if weights is None else {"class_weight": weights}),
            shuffle=False,  # the order is the pipeline's own: a function of (seed, epoch)
            verbose=0,
        )
        if reporter.stopped is not None:
            break
    best_val_accuracy = finite_or_none(reporter.best_val_accuracy)
    if reporter.stopped is not None:
        return RunResult(
            reporter.results,
            reporter.stopped,
            reporter.best_epoch,
            best_val_accuracy,
            None,
            None,
            learning_rates=reporter.learning_rates,
        )
    best = keras.models.load_model(reporter.checkpoint, compile=False)
    evaluation = evaluate_network(
        best,
        splits.test,
        splits.test_labels,
        list(spec.info.class_names),
        loss=build_loss(spec, per_example=True),
        accuracy=accuracy_metric(spec),
    )
    return RunResult(
        reporter.results,
        None,
        reporter.best_epoch,
        best_val_accuracy,
        reporter.checkpoint,
        evaluation,
        stopped_early_at=controls.stopped_early_at,
        learning_rates=reporter.learning_rates,
    )
