"""The per-epoch controls of a run: the learning rate of each epoch, reduce-on-plateau and early stopping.

Plain Python (no TensorFlow), driven by the runner at each epoch's start and end. The learning rate of epoch k is
a pure function of k and, for reduce-on-plateau, of a small state; early stopping has its own (best value, wait).
Both states are plain numbers (`TrainingControls.state`) that travel in the resume state, so a job killed after
epoch k and resumed decides exactly as an uninterrupted one. Keras' own callbacks cannot be used for this: each
`fit` call (one per epoch here) resets them, and their state is not theirs to save.

The rules are Keras' own, step for step (tests/test_training_options.py holds each to its Keras counterpart): the
schedules to `keras.optimizers.schedules` evaluated at the epoch's first step, reduce-on-plateau and early stopping
to `keras.callbacks.ReduceLROnPlateau` and `EarlyStopping` fed the same figures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from training.options import (
    ConstantSchedule,
    CosineDecay,
    EarlyStopping,
    ExponentialDecay,
    LearningRateSchedule,
    Monitor,
    ReduceOnPlateau,
    StepDecay,
)
from training.spec import ExperimentSpec


def scheduled_rate(schedule: LearningRateSchedule, base: float, epoch: int) -> float:
    """The learning rate of 0-based `epoch` under a schedule that needs no state (not reduce-on-plateau's, which
    `TrainingControls` keeps: here it is the rate it starts from)."""
    warmup = schedule.warmup_epochs
    if epoch < warmup:
        # Keras' CosineDecay warm-up from base / (warmup + 1): epoch k trains at base (k + 1) / (warmup + 1), so
        # no epoch is wasted at a rate of 0 and the first epoch after the warm-up is at base.
        return base * (epoch + 1) / (warmup + 1)
    after = epoch - warmup
    match schedule:
        case StepDecay():
            return float(base * schedule.factor ** (after // schedule.every_epochs))
        case ExponentialDecay():
            return float(base * schedule.rate**after)
        case CosineDecay():
            assert schedule.decay_epochs is not None  # resolved by the spec
            done = min(after, schedule.decay_epochs) / schedule.decay_epochs
            return base * ((1 - schedule.alpha) * 0.5 * (1 + math.cos(math.pi * done)) + schedule.alpha)
        case ConstantSchedule() | ReduceOnPlateau():
            return base


def improved(monitor: Monitor, current: float | None, best: float | None, min_delta: float) -> bool:
    """Keras' rule: better than the best by more than min_delta; the first figure always is; a diverged one never."""
    if current is None:
        return False
    if best is None:
        return True
    return current - min_delta > best if monitor.higher_is_better else current + min_delta < best


@dataclass
class _Watch:
    """How a watched figure has gone: the best seen, and the epochs since it last improved."""

    best: float | None = None
    wait: int = 0


@dataclass
class _Plateau(_Watch):
    rate: float = 0.0  # the learning rate after the warm-up, reduced in place (float32, as the optimizer holds it)
    cooldown: int = 0


@dataclass
class ControlState:
    """Everything the controls remember between epochs: plain numbers, stored with the resume state."""

    stopping: _Watch
    plateau: _Plateau | None
    stopped_early_at: int | None = None  # the 1-based epoch after which early stopping ended training

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ControlState:
        plateau = data.get("plateau")
        return cls(
            stopping=_Watch(**data["stopping"]),
            plateau=None if plateau is None else _Plateau(**plateau),
            stopped_early_at=data.get("stopped_early_at"),
        )


def _float32(value: float) -> float:
    return float(np.float32(value))


class TrainingControls:
    """The learning rate to set before each epoch, and whether to stop after it, for one spec."""

    def __init__(self, spec: ExperimentSpec) -> None:
        self.base = spec.resolved_learning_rate
        self.schedule = spec.lr_schedule
        self.early_stopping: EarlyStopping | None = spec.early_stopping
        plateau = _Plateau(rate=_float32(self.base)) if isinstance(self.schedule, ReduceOnPlateau) else None
        self.state = ControlState(stopping=_Watch(), plateau=plateau)

    @property
    def active(self) -> bool:
        """Whether the spec asks for any of them; a spec without them trains exactly as before they existed."""
        return self.schedule is not None or self.early_stopping is not None

    @property
    def stopped_early_at(self) -> int | None:
        return self.state.stopped_early_at

    def learning_rate(self, epoch: int) -> float | None:
        """The rate of 0-based `epoch`; None without a schedule (the optimizer keeps the spec's rate)."""
        if self.schedule is None:
            return None
        plateau = self.state.plateau
        if plateau is not None and epoch >= self.schedule.warmup_epochs:
            return plateau.rate
        return scheduled_rate(self.schedule, self.base, epoch)

    def end_epoch(self, epoch: int, figures: dict[str, float | None]) -> bool:
        """Take 0-based `epoch`'s figures (loss, accuracy, val_loss, val_accuracy); True: stop training now."""
        if isinstance(self.schedule, ReduceOnPlateau) and epoch >= self.schedule.warmup_epochs:
            self._plateau(self.schedule, figures[self.schedule.monitor])
        stopping = self.early_stopping
        if stopping is None:
            return False
        watch, current = self.state.stopping, figures[stopping.monitor]
        watch.wait += 1
        if improved(stopping.monitor, current, watch.best, stopping.min_delta):
            watch.best, watch.wait = current, 0
            return False
        if watch.wait >= stopping.patience and epoch > 0:  # Keras' rule: never after the first epoch
            self.state.stopped_early_at = epoch + 1
            return True
        return False

    def _plateau(self, schedule: ReduceOnPlateau, current: float | None) -> None:
        plateau = self.state.plateau
        assert plateau is not None
        if plateau.cooldown > 0:
            plateau.cooldown -= 1
            plateau.wait = 0
        if improved(schedule.monitor, current, plateau.best, schedule.min_delta):
            plateau.best, plateau.wait = current, 0
        elif plateau.cooldown == 0:
            plateau.wait += 1
            if plateau.wait >= schedule.patience and plateau.rate > _float32(schedule.min_learning_rate):
                plateau.rate = _float32(max(plateau.rate * schedule.factor, schedule.min_learning_rate))
                plateau.cooldown, plateau.wait = schedule.cooldown, 0
