"""What a training run produces. Plain data, free of TensorFlow, so the worker's parent process can import it."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "best_model.h5"


def finite_or_none(value: Any) -> float | None:
    """A metric as a float, or None where training diverged (NaN or infinity)."""
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based, as people count epochs
    # None where training diverged (NaN or infinity): JSON and SQL both carry it as null.
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    # The rate the optimizer trained this epoch at (a schedule's, a plateau's, or the constant one); None where
    # it was not recorded.
    learning_rate: float | None = None


@dataclass(frozen=True)
class EvaluationResult:
    test_loss: float | None
    test_accuracy: float | None
    labels: list[str]
    confusion_matrix: list[list[int]]
    classification_report: dict[str, Any]


class StopReason(StrEnum):
    """Why a run ended before its last epoch."""

    CANCELLED = "cancelled"  # the user asked; the run stopped at an epoch end
    INTERRUPTED = "interrupted"  # the process is shutting down; the unfinished epoch was dropped


@dataclass(frozen=True)
class RunResult:
    epochs: list[EpochResult]  # the epochs this run trained (after a resume, only the new ones)
    stopped: StopReason | None
    best_epoch: int | None
    best_val_accuracy: float | None
    checkpoint: Path | None
    evaluation: EvaluationResult | None
    # The 1-based epoch after which early stopping ended training (the run then evaluated as usual); None: it
    # trained every epoch, or was stopped otherwise.
    stopped_early_at: int | None = None
    # The learning rate the optimizer trained each of `epochs` at (a schedule's, or the spec's constant one).
    learning_rates: list[float] = field(default_factory=list)

    @property
    def cancelled(self) -> bool:
        return self.stopped is StopReason.CANCELLED


@dataclass(frozen=True)
class ResumePoint:
    """Everything a new attempt needs to continue after `epoch` (1-based) as if never interrupted."""

    epoch: int
    state: bytes
    best_epoch: int | None
    best_val_accuracy: float | None
    # The best checkpoint (best_model.h5) when this epoch made a new one; None: unchanged since the last point.
    best_checkpoint: bytes | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.state).hexdigest()
