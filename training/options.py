"""The spec's training options beyond the homework's: early stopping, learning-rate schedules, class weights.

Plain pydantic models, so they are data (stored with the experiment and shown wherever the spec is) and each
bad value is refused with a message that says what to send instead. How training applies them is
`training/schedules.py`; every option left out trains exactly as before it existed.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from training.bounds import Between

MAX_OPTION_EPOCHS = 1000  # the spec's MAX_EPOCHS: a count of epochs in an option never needs more


class Monitor(StrEnum):
    """An epoch's figure that early stopping or reduce-on-plateau watches (lower is better for the losses)."""

    VAL_LOSS = "val_loss"
    VAL_ACCURACY = "val_accuracy"
    LOSS = "loss"
    ACCURACY = "accuracy"

    @property
    def higher_is_better(self) -> bool:
        return self in (Monitor.VAL_ACCURACY, Monitor.ACCURACY)


class ClassWeighting(StrEnum):
    BALANCED = "balanced"  # n / (classes x count of the class), from the training split's labels


def _finite(name: str, value: float, *, low: float, example: str, high: float | None = None) -> float:
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        bounds = f"from {low:g} to {high:g}" if high is not None else f"a finite number >= {low:g}"
        raise ValueError(f"{name} must be {bounds} (e.g. {example})")
    return value


class EarlyStopping(BaseModel):
    """Stop once `monitor` has not improved by more than `min_delta` for `patience` epochs in a row.

    It decides when to stop, nothing else: the best checkpoint is still the epoch of best validation accuracy.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"monitor": "val_loss", "patience": 3, "min_delta": 0.0}]},
    )

    monitor: Monitor = Field(default=Monitor.VAL_LOSS, description="The figure watched (Keras' names).")
    patience: Annotated[int, Between(1, MAX_OPTION_EPOCHS)] = Field(
        default=3, description="Epochs without an improvement before training stops."
    )
    min_delta: float = Field(default=0.0, description="The least change that counts as an improvement (>= 0).")

    @field_validator("min_delta")
    @classmethod
    def _min_delta(cls, value: float) -> float:
        return _finite("early_stopping.min_delta", value, low=0.0, example="0.001")


class _Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warmup_epochs: Annotated[int, Between(0, MAX_OPTION_EPOCHS)] = Field(
        default=0,
        description="Epochs of linear warm-up first: epoch k (0-based) of it trains at learning_rate x (k+1) / "
        "(warmup_epochs+1); the schedule then runs from learning_rate, its epochs counted after the warm-up.",
    )


class ConstantSchedule(_Schedule):
    """The learning rate after the warm-up, unchanged (a warm-up alone)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "constant", "warmup_epochs": 2}]})

    type: Literal["constant"]


class StepDecay(_Schedule):
    """learning_rate x factor^floor(epoch / every_epochs) (Keras' ExponentialDecay with staircase)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "step", "every_epochs": 2, "factor": 0.5}]})

    type: Literal["step"]
    every_epochs: Annotated[int, Between(1, MAX_OPTION_EPOCHS)] = Field(description="Epochs between drops.")
    factor: float = Field(default=0.5, description="What each drop multiplies the rate by (0 < factor < 1).")

    @field_validator("factor")
    @classmethod
    def _factor(cls, value: float) -> float:
        return _open_factor("lr_schedule.factor", value)


class ExponentialDecay(_Schedule):
    """learning_rate x rate^epoch (Keras' ExponentialDecay, one decay step an epoch)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "exponential", "rate": 0.9}]})

    type: Literal["exponential"]
    rate: float = Field(description="What each epoch multiplies the rate by (0 < rate < 1).")

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: float) -> float:
        return _open_factor("lr_schedule.rate", value)


class CosineDecay(_Schedule):
    """From learning_rate down to alpha x learning_rate along a half cosine over decay_epochs (Keras' CosineDecay)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "cosine", "decay_epochs": 4, "alpha": 0.1, "warmup_epochs": 1}]}
    )

    type: Literal["cosine"]
    decay_epochs: Annotated[int, Between(1, MAX_OPTION_EPOCHS)] | None = Field(
        default=None, description="Epochs of the decay. Default: every epoch after the warm-up."
    )
    alpha: float = Field(default=0.0, description="The floor, as a fraction of learning_rate (0 to 1).")

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value: float) -> float:
        return _finite("lr_schedule.alpha", value, low=0.0, high=1.0, example="0.0")


class ReduceOnPlateau(_Schedule):
    """Multiply the rate by factor once `monitor` has not improved by min_delta for `patience` epochs (Keras'
    ReduceLROnPlateau), never below min_learning_rate."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "plateau", "monitor": "val_loss", "factor": 0.5, "patience": 1}]}
    )

    type: Literal["plateau"]
    monitor: Monitor = Field(default=Monitor.VAL_LOSS, description="The figure watched (Keras' names).")
    factor: float = Field(default=0.1, description="What each reduction multiplies the rate by (0 < factor < 1).")
    patience: Annotated[int, Between(1, MAX_OPTION_EPOCHS)] = Field(
        default=2, description="Epochs without an improvement before the rate is reduced."
    )
    min_delta: float = Field(default=0.0001, description="The least change that counts as an improvement (>= 0).")
    cooldown: Annotated[int, Between(0, MAX_OPTION_EPOCHS)] = Field(
        default=0, description="Epochs after a reduction before epochs without improvement are counted again."
    )
    min_learning_rate: float = Field(default=0.0, description="The rate is never reduced below this (>= 0).")

    @field_validator("factor")
    @classmethod
    def _factor(cls, value: float) -> float:
        return _open_factor("lr_schedule.factor", value)

    @field_validator("min_delta", "min_learning_rate")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        return _finite("lr_schedule's min_delta and min_learning_rate", value, low=0.0, example="0.0001")


def _open_factor(name: str, value: float) -> float:
    if not math.isfinite(value) or not 0 < value < 1:
        raise ValueError(f"{name} must be between 0 and 1, both excluded (e.g. 0.5)")
    return value


# One of the schedules, told apart by its `type` (the spec's field names it as the discriminator, so a 422 lists
# the types there are).
LearningRateSchedule = ConstantSchedule | StepDecay | ExponentialDecay | CosineDecay | ReduceOnPlateau
