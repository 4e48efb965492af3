"""Bodies of the sweep routes: a grid to expand, and the comparison of what its runs came to."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas.experiments import ExperimentCreate, ExperimentRead
from api.schemas.fields import UtcDatetime
from domain.lifecycle import Status
from training.bounds import Between
from training.spec import (
    MAX_REPEATS,
    Head,
    Loss,
    Optimizer,
    Validation,
)

# Caps checked before a grid is looked at further: more axes than spec fields, or an axis longer than any
# sweep may be (EPOCHAL_MAX_SWEEP_SIZE is far below this), can only be a mistake or an attack.
MAX_GRID_AXES = 16
MAX_AXIS_VALUES = 1000
# A grid axis may be a path into a spec field: "network.layers.3.rate" sets that layer's rate (a dict key or a list
# index per segment). Deeper than a layer's argument is never needed.
PATH_SEPARATOR = "."
MAX_PATH_SEGMENTS = 8


class SweepCreate(BaseModel):
    """A base spec and a grid: one experiment per combination of the grid's axes."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    base: dict[str, Any] = Field(
        description="Spec fields shared by every experiment (as in POST /experiments).",
        examples=[{"dataset": "mnist", "epochs": 10, "batch_size": 128}],
    )
    grid: dict[str, list[Any]] = Field(
        description="Axes to combine. A spec field with a list of values (e.g. {'optimizer': ['adam', 'sgd']}), "
        "a path into one, its segments dict keys or list indexes (e.g. {'network.layers.3.rate': [0.2, 0.5]}: "
        "the base's network must be a graph that has layer 3), or 'variants': a list of partial specs taken together "
        "(e.g. [{'head': {...}, 'loss': 'mse'}]).",
        examples=[{"optimizer": ["sgd_nesterov", "adagrad", "rmsprop", "adadelta", "adam"]}],
    )
    repeats: Annotated[int, Between(1, MAX_REPEATS)] = Field(
        default=1,
        description="Runs of each combination, repeat i with seed (seed + i x 1,000,003) mod 2^31; counted in the "
        "sweep size (combinations x repeats). The comparison then gives each configuration's mean, standard "
        "deviation and 95% confidence interval, and which ranked neighbours a Welch t-test can tell apart.",
    )

    @field_validator("base")
    @classmethod
    def _repeats_not_in_base(cls, base: dict[str, Any]) -> dict[str, Any]:
        if "repeats" in base:
            raise ValueError("repeats is a field of the sweep, not of its base spec: move it next to base and grid")
        return base

    @field_validator("grid")
    @classmethod
    def _known_axes(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid:
            raise ValueError("the grid is empty; give at least one axis, e.g. {'optimizer': ['adam', 'sgd']}")
        if len(grid) > MAX_GRID_AXES:
            raise ValueError(f"the grid has {len(grid)} axes; at most {MAX_GRID_AXES}")
        for key, values in grid.items():
            if len(values) > MAX_AXIS_VALUES:
                raise ValueError(f"grid.{key} has {len(values)} values; at most {MAX_AXIS_VALUES} per axis")
        # repeats is the sweep's own field: an axis of it would multiply runs without a comparable label.
        allowed = set(ExperimentCreate.model_fields) - {"name", "repeats"}
        for key, values in grid.items():
            field, *rest = key.split(PATH_SEPARATOR)
            if key != "variants" and field not in allowed:
                raise ValueError(
                    f"grid.{key} is not a spec field; use one of {sorted(allowed)}, a path into one "
                    "(network.layers.3.rate), or 'variants'"
                )
            if rest and (len(rest) >= MAX_PATH_SEGMENTS or not all(rest)):
                raise ValueError(
                    f"grid.{key}: a path is a spec field and then up to {MAX_PATH_SEGMENTS - 1} non-empty dict keys "
                    "or list indexes, joined by dots (network.layers.0.filters)"
                )
            if not values:
                raise ValueError(f"grid.{key} is empty; list at least one value")
            if key == "variants":
                for index, entry in enumerate(values):
                    if not isinstance(entry, dict) or not entry:
                        raise ValueError(f"grid.variants[{index}] must be a non-empty object of spec fields")
        return grid


class ComparisonRow(BaseModel):
    """One experiment of a sweep, summarized for ranking."""

    rank: int | None = Field(description="1 = best validation accuracy; null until the experiment has epochs.")
    experiment_id: int
    label: str | None = Field(description="What differs from the base spec.")
    status: Status
    optimizer: Optimizer
    learning_rate: float | None
    head: Head
    loss: Loss
    best_epoch: int | None
    best_accuracy: float | None
    best_loss: float | None
    best_val_accuracy: float | None
    best_val_loss: float | None
    final_accuracy: float | None
    final_loss: float | None
    final_val_accuracy: float | None
    final_val_loss: float | None
    test_accuracy: float | None
    test_loss: float | None
    training_seconds: float = Field(description="Sum of the epochs' wall-clock seconds.")
    validation: Validation
    selected_on: str = Field(
        description="'held-out validation (N examples)', or 'selected on test': then "
        "best_val_accuracy is a test figure and test_accuracy is optimistic."
    )
    seed: int
    repeat: int
    collapsed: bool | None = Field(
        description="Test accuracy at chance (see statistics.collapse); null until evaluated."
    )


class Stats(BaseModel):
    """One metric over a configuration's succeeded runs."""

    n: int
    mean: float | None
    std: float | None = Field(description="Sample standard deviation (n - 1); null with fewer than two runs.")
    ci95_low: float | None = Field(description="95% confidence interval of the mean (Student t); null below n = 2.")
    ci95_high: float | None


class Distinction(BaseModel):
    """Whether a configuration is statistically distinguishable from the next one in the ranking, on one metric."""

    metric: str
    next_label: str | None
    method: str
    statistic: float | None = Field(description="Welch's t; null when neither side varies.")
    df: float | None = Field(description="Welch-Satterthwaite degrees of freedom.")
    p_value: float | None = Field(description="Two-sided; null when either side has fewer than two runs.")
    distinguishable: bool | None = Field(description="p < 0.05; null when it cannot be tested (fewer than two runs).")


class ConfigurationRow(BaseModel):
    """One configuration of a sweep (its repeats together), for an honest ranking."""

    rank: int | None = Field(description="1 = highest mean best validation accuracy; null until a run succeeded.")
    label: str | None
    validation: Validation
    selected_on: str = Field(description="'held-out validation' or 'selected on test' (test figures optimistic).")
    experiment_ids: list[int]
    seeds: list[int]
    succeeded: int
    unfinished: int = Field(description="Runs still queued or running.")
    failed: int = Field(description="Runs that failed: not in the statistics.")
    cancelled: int = Field(description="Runs cancelled: not in the statistics, and not failures.")
    best_val_accuracy: Stats = Field(description="The selection metric, over succeeded runs.")
    test_accuracy: Stats = Field(description="The one final test evaluation of each succeeded run.")
    collapsed: int = Field(description="Succeeded runs whose test accuracy is at chance (statistics.collapse).")
    chance: float | None = Field(description="The test split's majority-class rate.")
    vs_next: Distinction | None = Field(
        description="Best validation accuracy against the next-ranked configuration (the ranking metric)."
    )
    test_vs_next: Distinction | None = Field(description="Test accuracy against the next-ranked configuration.")


class StatisticsNote(BaseModel):
    """How the configuration table was computed."""

    ranking: str
    test: str
    confidence_interval: str
    collapse: str


class SweepState(StrEnum):
    """What a sweep's runs came to, taken together."""

    RUNNING = "running"  # some run is still queued or running
    SUCCEEDED = "succeeded"  # every run succeeded
    PARTLY_SUCCEEDED = "partly_succeeded"  # some succeeded, the others failed or were cancelled
    FAILED = "failed"  # none succeeded, and some failed
    CANCELLED = "cancelled"  # every run was cancelled


class SweepRead(BaseModel):
    id: int
    name: str | None
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    created_at: UtcDatetime
    status_counts: dict[str, int]
    finished: bool = Field(description="No run is queued or running (whatever they came to: see `state`).")
    state: SweepState = Field(description="What the runs came to, taken together: a finished sweep is not a success.")
    repeats: int = Field(description="Runs per configuration asked for (older sweeps: 1).")
    experiments: list[ExperimentRead]
    comparison: list[ComparisonRow] = Field(description="One row per run, best validation accuracy first.")
    configurations: list[ConfigurationRow] = Field(
        description="One row per configuration (its repeats together), ranked by mean best validation accuracy, "
        "with n, mean, std, 95% CI and whether each is distinguishable from the next."
    )
    statistics: StatisticsNote
