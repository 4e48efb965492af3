"""What a training run produces. Plain data, free of TensorFlow, so the worker's parent process can import it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "best_model.h5"


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based, as people count epochs
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class EvaluationResult:
    test_loss: float
    test_accuracy: float
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
