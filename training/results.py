"""What a training run produces. Plain data, free of TensorFlow, so the worker's parent process can import it."""

from __future__ import annotations

import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class EvaluationResult:
    test_loss: float | None
    test_accuracy: float | None
    labels: list[str]
    confusion_matrix: list[list[int]]
    classification_report: dict[str, Any]


@dataclass(frozen=True)
class RunResult:
    epochs: list[EpochResult]
    cancelled: bool
    best_epoch: int | None
    checkpoint: Path | None
    evaluation: EvaluationResult | None

    @property
    def best_val_accuracy(self) -> float | None:
        return next((e.val_accuracy for e in self.epochs if e.epoch == self.best_epoch), None)
