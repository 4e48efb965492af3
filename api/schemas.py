"""Request and response bodies. Requests reuse the training spec, so the vocabulary is defined once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from domain.lifecycle import Status
from models import Experiment
from models.base import as_utc
from models.specs import head_of, validation_of
from training.bounds import Between
from training.spec import (
    MAX_REPEATS,
    Dataset,
    ExperimentSpec,
    Head,
    Loss,
    Network,
    Optimizer,
    Validation,
)

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class ExperimentCreate(ExperimentSpec):
    """An experiment to train: the spec, plus where to run it."""

    queue: str | None = Field(
        default=None,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Celery queue to run on (e.g. 'gpu'); default: the server's EPOCHAL_DEFAULT_QUEUE.",
    )
    repeats: Annotated[int, Between(1, MAX_REPEATS)] = Field(
        default=1,
        description="Train this configuration this many times, repeat i with seed (seed + i x 1,000,003) mod 2^31. "
        "With more than one, the runs form a sweep of one configuration (see its sweep_id) whose comparison "
        "gives their mean, spread and confidence interval; the response is the first run.",
    )


class ExperimentSummary(BaseModel):
    epochs_done: int
    best_epoch: int | None
    best_val_accuracy: float | None
    test_loss: float | None
    test_accuracy: float | None


class AttemptRead(BaseModel):
    """One claim of the job by a worker process; a job lost and resumed has several."""

    model_config = ConfigDict(from_attributes=True)

    number: int
    worker: str
    resumed_from_epoch: int = Field(description="Epochs already finished when it started (0: from scratch).")
    started_at: UtcDatetime
    ended_at: UtcDatetime | None
    outcome: str | None = Field(
        description="succeeded, failed, cancelled, lost (no heartbeat), interrupted (worker stopped), timed_out; "
        "null while it runs."
    )
    cause: str | None


def selection_label(validation: Validation, validation_count: int | None) -> str:
    """How the best epoch was chosen, in words; 'selected on test' marks figures that are optimistic."""
    if validation is Validation.TEST:
        return "selected on test"
    return "held-out validation" + (f" ({validation_count} examples)" if validation_count is not None else "")


class ExperimentRead(BaseModel):
    id: int
    name: str | None
    status: Status
    dataset: Dataset
    network: Network
    optimizer: Optimizer
    learning_rate: float | None
    head: Head
    loss: Loss
    epochs: int
    batch_size: int
    train_size: int | None
    validation: Validation = Field(
        description="held_out: the best epoch was chosen on held-out training data; "
        "test: on the test split (selected on test)."
    )
    validation_split: float | None
    selected_on: str = Field(
        description="How the best epoch was chosen: 'held-out validation (N examples)', "
        "or 'selected on test', whose test figures are optimistic."
    )
    train_count: int | None = Field(description="Examples trained on, recorded by the worker once it split the data.")
    validation_count: int | None = Field(
        description="Examples that validated each epoch (with validation 'test': the whole test split)."
    )
    seed: int
    repeat: int = Field(description="This run's index among the repeats of its configuration (0-based).")
    base_seed: int | None = Field(description="The seed the repeats' seeds were derived from; null before repeats.")
    mixed_precision: bool
    deterministic: bool
    jit_compile: bool | None
    queue: str
    sweep_id: int | None
    cancel_requested: bool
    error: str | None
    warnings: list[str]
    worker: str | None = Field(description="The Celery worker that ran the job.")
    device: str | None = Field(description="The device it trained on: a GPU's name, or CPU.")
    attempts: list[AttemptRead] = Field(description="Every attempt at the job, oldest first.")
    lease_expires_at: UtcDatetime | None = Field(
        description="While running: the attempt is presumed dead if its heartbeat has not renewed this by then."
    )
    summary: ExperimentSummary
    priority: int = Field(description="Set by an admin (PUT /experiments/{id}/priority); higher is dispatched first.")
    queue_position: int | None = Field(
        default=None,
        description="While queued, in GET /experiments/{id} only: 1-based place in its queue, in the order the "
        "fair-share dispatcher would choose now (it changes as others submit, finish or get priorities); else null.",
    )
    estimated_start: UtcDatetime | None = Field(
        default=None,
        description="An estimate, while queued, in GET /experiments/{id} only: when it may start, from the running "
        "jobs' progress and the queue's recent epoch times (null when the queue has no epoch to measure by yet).",
    )
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None

    @classmethod
    def of(cls, row: Experiment, *, new: bool = False) -> ExperimentRead:
        """The answer for `row`. With `new` (a row this request just inserted) its attempts, evaluation and
        epochs are known to be empty: three queries that would find nothing are not sent."""
        evaluation = None if new else row.evaluation
        return cls(
            id=row.id,
            name=row.name,
            status=row.status,
            dataset=row.dataset,
            network=row.network,
            optimizer=row.optimizer,
            learning_rate=row.learning_rate,
            head=head_of(row),
            loss=row.loss,
            epochs=row.epochs,
            batch_size=row.batch_size,
            train_size=row.train_size,
            validation=validation_of(row),
            validation_split=row.validation_split,
            selected_on=selection_label(validation_of(row), row.validation_count),
            train_count=row.train_count,
            validation_count=row.validation_count,
            seed=row.seed,
            repeat=row.repeat or 0,
            base_seed=row.base_seed,
            mixed_precision=row.mixed_precision,
            deterministic=row.deterministic,
            jit_compile=row.jit_compile,
            queue=row.queue,
            sweep_id=row.sweep_id,
            cancel_requested=row.cancel_requested,
            error=row.error,
            warnings=list(row.warnings or []),
            worker=row.worker,
            device=row.device,
            attempts=[] if new else [AttemptRead.model_validate(a) for a in row.attempts],
            lease_expires_at=row.lease_expires_at,
            summary=ExperimentSummary(
                epochs_done=0 if new else row.epochs_done,  # type: ignore[attr-defined]
                best_epoch=row.best_epoch,
                best_val_accuracy=row.best_val_accuracy,
                test_loss=evaluation.test_loss if evaluation else None,
                test_accuracy=evaluation.test_accuracy if evaluation else None,
            ),
            priority=row.priority or 0,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


class PriorityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Annotated[int, Between(-1000, 1000)] = Field(
        description="Added to the owner's priority; higher is dispatched first, before fair share. 0 is the default."
    )


class UsageRead(BaseModel):
    """What a user is using now."""

    user_id: int
    queued: int = Field(description="Jobs queued (waiting for a slot, or released and about to start).")
    running: int
    worker_seconds: float = Field(description="Worker time of every attempt of their jobs, all time.")
    recent_worker_seconds: float = Field(
        description="The worker time fair share counts against them: decayed, time used one half-life ago "
        "(EPOCHAL_FAIR_SHARE_HALF_LIFE_S) counts half."
    )
    storage_bytes: int = Field(description="Bytes their jobs store: checkpoints and resume states.")
    max_running_jobs: int = Field(description="How many of their jobs may run at once (their cap in effect).")
    priority: int = Field(description="Their priority, added to each of their jobs' own.")


class ExperimentPage(BaseModel):
    items: list[ExperimentRead]
    total: int
    limit: int
    offset: int


class EpochMetricRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    attempt: int = Field(description="The attempt that trained it: epochs before a resume keep their attempt.")


class ConfusionMatrixRead(BaseModel):
    labels: list[str]
    matrix: list[list[int]] = Field(description="Rows are true classes, columns predicted classes.")


class EvaluationRead(BaseModel):
    experiment_id: int
    test_loss: float | None
    test_accuracy: float | None
    confusion_matrix: ConfusionMatrixRead
    classification_report: dict[str, Any] = Field(
        description="sklearn's report: precision, recall, f1-score and support per class; accuracy; "
        "macro avg and weighted avg."
    )


class ArtifactRead(BaseModel):
    name: str
    media_type: str
    size: int
    sha256: str
    url: str
    created_at: UtcDatetime
    # A Keras checkpoint's input contract (api/model_contract.py); null for any other kind of file.
    input_shape: list[int | None] | None = Field(
        default=None, description="Keras input shape of the network, batch first (null: any batch size)."
    )
    input_dtype: str | None = Field(default=None, description="dtype of the input layer: float32.")
    input_range: list[float] | None = Field(
        default=None, description="[0, 255]: raw pixels; the network rescales by 1/255 itself. Do not divide by 255."
    )
    preprocessing: str | None = Field(default=None, description="How to turn an image into the network's input.")


class PredictionRead(BaseModel):
    experiment_id: int
    label: str
    class_index: int
    probabilities: dict[str, float] | None = Field(
        description="Per-class probabilities; null for relu/linear heads, whose outputs are raw scores."
    )
    outputs: list[float] = Field(description="The network's raw output units.")


class DatasetRead(BaseModel):
    name: Dataset
    description: str
    class_names: list[str]
    input_shape: list[int]
    default_network: Network
    test_split: str
    in_data_dir: bool = Field(description="Whether the files are in the server's data folder (else downloaded).")
    best_experiment_id: int | None = Field(description="The succeeded experiment that dataset predictions use.")


class DependencyState(BaseModel):
    ok: bool
    detail: str


class HealthRead(BaseModel):
    status: str = Field(
        description="'ok' when every dependency answers and the reaper's passes run, 'degraded' (and a 503) otherwise."
    )
    database: DependencyState
    broker: DependencyState
    reaper: DependencyState = Field(
        description="Whether the reaper's passes run: not ok after three intervals (EPOCHAL_REAPER_INTERVAL_S) "
        "without one, once this API process is up for three intervals. The detail names the last pass's holder."
    )


# Caps checked before a grid is looked at further: more axes than spec fields, or an axis longer than any
# sweep may be (EPOCHAL_MAX_SWEEP_SIZE is far below this), can only be a mistake or an attack.
MAX_GRID_AXES = 16
MAX_AXIS_VALUES = 1000


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
        "or 'variants': a list of partial specs taken together (e.g. [{'head': {...}, 'loss': 'mse'}]).",
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
            if key != "variants" and key not in allowed:
                raise ValueError(f"grid.{key} is not a spec field; use one of {sorted(allowed)} or 'variants'")
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
