"""Request and response bodies. Requests reuse the training spec, so the vocabulary is defined once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from models import Experiment
from models.specs import head_of
from training.spec import Dataset, ExperimentSpec, Head, Loss, Network, Optimizer, Status


def _as_utc(value: datetime) -> datetime:
    # Times are stored in UTC, but SQLite hands them back without a zone: say so, as PostgreSQL does.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class ExperimentCreate(ExperimentSpec):
    """An experiment to train: the spec, plus where to run it."""

    queue: str | None = Field(
        default=None,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Celery queue to run on (e.g. 'gpu'); default: the server's EPOCHAL_DEFAULT_QUEUE.",
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
    validation_split: float | None
    seed: int
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
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None

    @classmethod
    def of(cls, row: Experiment) -> ExperimentRead:
        evaluation = row.evaluation
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
            validation_split=row.validation_split,
            seed=row.seed,
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
            attempts=[AttemptRead.model_validate(a) for a in row.attempts],
            lease_expires_at=row.lease_expires_at,
            summary=ExperimentSummary(
                epochs_done=row.epochs_done,  # type: ignore[attr-defined]
                best_epoch=row.best_epoch,
                best_val_accuracy=row.best_val_accuracy,
                test_loss=evaluation.test_loss if evaluation else None,
                test_accuracy=evaluation.test_accuracy if evaluation else None,
            ),
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


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
    status: str = Field(description="'ok' when every dependency answers, 'degraded' otherwise.")
    database: DependencyState
    broker: DependencyState


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
        allowed = set(ExperimentCreate.model_fields) - {"name"}
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


class SweepRead(BaseModel):
    id: int
    name: str | None
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    created_at: UtcDatetime
    status_counts: dict[str, int]
    finished: bool
    experiments: list[ExperimentRead]
    comparison: list[ComparisonRow]
