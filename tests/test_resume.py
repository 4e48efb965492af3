"""Resume: the data order is a function of (seed, epoch), and a run stopped and resumed ends as if never stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.data import load_splits
from training.results import EpochResult, ResumePoint, StopReason
from training.resume import capture_state, restore_state
from training.runner import run_experiment
from training.spec import ExperimentSpec


def spec(**fields: Any) -> ExperimentSpec:
    base = {
        "dataset": "mnist",
        "optimizer": "adam",
        "epochs": 3,
        "batch_size": 64,
        "train_size": 320,
        "deterministic": True,
    }
    return ExperimentSpec.model_validate({**base, **fields})


def history(epochs: list[EpochResult]) -> list[tuple[Any, ...]]:
    # Everything but the wall-clock seconds.
    return [(e.epoch, e.loss, e.accuracy, e.val_loss, e.val_accuracy) for e in epochs]


def test_each_epoch_has_its_own_order_whatever_epoch_the_stream_starts_at(data_dir: Path) -> None:
    train = load_splits(spec(), data_dir).train
    steps = train.steps_per_epoch
    assert steps == 5
    from_start = [y.numpy() for _, y in train.epochs(0, 3)]
    from_second = [y.numpy() for _, y in train.epochs(1, 3)]
    assert len(from_start) == 3 * steps
    assert all(np.array_equal(a, b) for a, b in zip(from_start[steps:], from_second, strict=True))
    # A different order every epoch, over the same examples.
    first, second = np.concatenate(from_start[:steps]), np.concatenate(from_start[steps : 2 * steps])
    assert not np.array_equal(first, second)
    assert sorted(first.tolist()) == sorted(second.tolist())


def test_a_run_interrupted_mid_epoch_and_resumed_has_the_history_of_an_uninterrupted_one(
    data_dir: Path, tmp_path: Path
) -> None:
    whole = run_experiment(spec(), data_dir, tmp_path / "whole")

    points: list[ResumePoint] = []
    seen: list[EpochResult] = []

    def keep(epoch: EpochResult, point: ResumePoint) -> None:
        seen.append(epoch)
        points.append(point)

    # Two batches per call, so 3 calls an epoch (2, 2, 1), and the stop is checked after each call:
    # interrupted after the second epoch's first two batches (the 4th call), that epoch must be dropped.
    calls = iter(range(100))
    stopped = run_experiment(
        spec(),
        data_dir,
        tmp_path / "first",
        on_epoch_end=keep,
        interrupted=lambda: next(calls) >= 3,
        steps_per_execution=2,
    )
    assert stopped.stopped is StopReason.INTERRUPTED
    assert [e.epoch for e in seen] == [1]
    assert stopped.evaluation is None

    # A new process would read this point back from the database: only its bytes cross over.
    point = points[-1]
    assert point.best_checkpoint is not None  # epoch 1 is the best so far, and its checkpoint travels with it
    resumed = run_experiment(spec(), data_dir, tmp_path / "second", on_epoch_end=keep, resume=point)
    assert [e.epoch for e in resumed.epochs] == [2, 3]
    assert history(seen) == history(whole.epochs)
    assert (resumed.best_epoch, resumed.best_val_accuracy) == (whole.best_epoch, whole.best_val_accuracy)
    assert resumed.evaluation == whole.evaluation


def test_resume_state_restores_weights_and_optimizer_slots_exactly(data_dir: Path, tmp_path: Path) -> None:
    from training.networks import build_network, compile_network

    points: list[ResumePoint] = []
    run_experiment(spec(epochs=1), data_dir, tmp_path, on_epoch_end=lambda _e, p: points.append(p))
    fresh = compile_network(build_network(spec()), spec())
    restore_state(fresh, points[0].state)
    assert capture_state(fresh) == points[0].state
    assert int(fresh.optimizer.iterations.numpy()) == 5  # five steps of one epoch, carried over


def test_a_resume_state_of_another_network_is_refused(data_dir: Path, tmp_path: Path) -> None:
    from training.networks import build_network, compile_network

    points: list[ResumePoint] = []
    run_experiment(spec(epochs=1), data_dir, tmp_path, on_epoch_end=lambda _e, p: points.append(p))
    other = spec(dataset="cats_vs_dogs", head={"units": 1, "activation": "sigmoid"})
    with pytest.raises(ValueError, match="variables"):
        restore_state(compile_network(build_network(other), other), points[0].state)
