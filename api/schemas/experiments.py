"""Bodies of the experiment routes. Requests reuse the training spec, so the vocabulary is defined once."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import UtcDatetime
from api.schemas.stored_spec import Follows, with_stored_spec
from domain.lifecycle import Status
from models import Experiment
from models.specs import stored_spec
from training.bounds import Between
from training.spec import (
    MAX_REPEATS,
    ExperimentSpec,
    Validation,
)


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
    stopped_early_at: int | None = Field(
        description="The epoch after which early stopping ended training (the best epoch is still chosen by "
        "validation accuracy); null: it trained every epoch, or has not finished."
    )


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


# Every field of the spec, as stored (added by with_stored_spec), and the job's own fields around them. No docstring:
# it would become the schema's description, which the document has never had.
@with_stored_spec
class ExperimentRead(BaseModel):
    id: int
    status: Annotated[Status, Follows("name")]
    validation: Validation = Field(
        description="held_out: the best epoch was chosen on held-out training data; "
        "test: on the test split (selected on test)."
    )
    selected_on: Annotated[str, Follows("validation_split")] = Field(
        description="How the best epoch was chosen: 'held-out validation (N examples)', "
        "or 'selected on test', whose test figures are optimistic."
    )
    train_count: int | None = Field(description="Examples trained on, recorded by the worker once it split the data.")
    validation_count: int | None = Field(
        description="Examples that validated each epoch (with validation 'test': the whole test split)."
    )
    repeat: Annotated[int, Follows("seed")] = Field(
        description="This run's index among the repeats of its configuration (0-based)."
    )
    base_seed: int | None = Field(description="The seed the repeats' seeds were derived from; null before repeats.")
    queue: Annotated[str, Follows(None)]
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
        description="While queued: 1-based place in its queue, in the order the "
        "fair-share dispatcher would choose now (it changes as others submit, finish or get priorities); else null.",
    )
    estimated_start: UtcDatetime | None = Field(
        default=None,
        description="An estimate, while queued: when it may start, from the running "
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
        spec = stored_spec(row)
        return cls.model_validate(
            {
                **spec,
                "id": row.id,
                "status": row.status,
                "selected_on": selection_label(spec["validation"], row.validation_count),
                "train_count": row.train_count,
                "validation_count": row.validation_count,
                "repeat": row.repeat or 0,
                "base_seed": row.base_seed,
                "queue": row.queue,
                "sweep_id": row.sweep_id,
                "cancel_requested": row.cancel_requested,
                "error": row.error,
                "warnings": list(row.warnings or []),
                "worker": row.worker,
                "device": row.device,
                "attempts": [] if new else [AttemptRead.model_validate(a) for a in row.attempts],
                "lease_expires_at": row.lease_expires_at,
                "summary": ExperimentSummary(
                    epochs_done=0 if new else row.epochs_done,  # type: ignore[attr-defined]
                    best_epoch=row.best_epoch,
                    best_val_accuracy=row.best_val_accuracy,
                    test_loss=evaluation.test_loss if evaluation else None,
                    test_accuracy=evaluation.test_accuracy if evaluation else None,
                    stopped_early_at=row.stopped_early_at,
                ),
                "priority": row.priority or 0,
                "created_at": row.created_at,
                "started_at": row.started_at,
                "finished_at": row.finished_at,
            }
        )


class PriorityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Annotated[int, Between(-1000, 1000)] = Field(
        description="Added to the owner's priority; higher is dispatched first, before fair share. 0 is the default."
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
    learning_rate: float | None = Field(
        description="The rate the optimizer trained this epoch at: the spec's lr_schedule's (or plateau's) for the "
        "epoch, else its constant learning rate; null for epochs trained before it was recorded."
    )
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
    # A Keras checkpoint's input contract (api/serving/model_contract.py); null for any other kind of file.
    input_shape: list[int | None] | None = Field(
        default=None, description="Keras input shape of the network, batch first (null: any batch size)."
    )
    input_dtype: str | None = Field(default=None, description="dtype of the input layer: float32.")
    input_range: list[float] | None = Field(
        default=None, description="[0, 255]: raw pixels; the network rescales by 1/255 itself. Do not divide by 255."
    )
    preprocessing: str | None = Field(default=None, description="How to turn an image into the network's input.")
