"""The database tables. "models" means tables here; a Keras model is a "network"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, column_property, deferred, mapped_column, relationship

from models.base import Base, utcnow
from models.states import Status
from training.options import Monitor
from training.spec import Activation, Loss, Network, Optimizer, Validation


def _enum(enum_type: type[Any]) -> Enum:
    # Stored as the enum's values (Keras identifiers), as plain strings: adding a value needs no ALTER TYPE.
    return Enum(
        enum_type,
        values_callable=lambda members: [m.value for m in members],
        native_enum=False,
        create_constraint=False,
        length=40,
    )


class Experiment(Base):
    __tablename__ = "experiment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    # The spec, one column per field, so experiments can be filtered and compared in SQL.
    # A built-in's or an uploaded dataset's name (domain/datasets.py), and the version it trained on: the built-ins
    # are version 1. Rows from before uploads were possible were all built-ins, and the migration says version 1.
    dataset: Mapped[str] = mapped_column(String(40), index=True)
    dataset_version: Mapped[int | None] = mapped_column(Integer)
    # A preset's name ("mlp"), or a network graph as its JSON object (training/graph/network.py).
    network: Mapped[Network | dict[str, Any]] = mapped_column(JSON)
    optimizer: Mapped[Optimizer] = mapped_column(_enum(Optimizer))
    learning_rate: Mapped[float | None] = mapped_column(Float)
    head_units: Mapped[int] = mapped_column(Integer)
    head_activation: Mapped[Activation] = mapped_column(_enum(Activation))
    loss: Mapped[Loss] = mapped_column(_enum(Loss))
    epochs: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    train_size: Mapped[int | None] = mapped_column(Integer)
    # What selected the best epoch. Rows from before this column validated on the test split unless
    # validation_split was set; revision 0005 wrote that down, so a row is never ambiguous.
    validation: Mapped[Validation] = mapped_column(_enum(Validation))
    validation_split: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    # Repeats of one configuration: this run's index (0-based) and the seed its seed was derived from.
    repeat: Mapped[int] = mapped_column(Integer, default=0)
    base_seed: Mapped[int | None] = mapped_column(Integer)
    # Written by the worker once the data is split: how many examples trained and validated this run.
    train_count: Mapped[int | None] = mapped_column(Integer)
    validation_count: Mapped[int | None] = mapped_column(Integer)
    mixed_precision: Mapped[bool] = mapped_column(Boolean, default=False)
    deterministic: Mapped[bool] = mapped_column(Boolean, default=False)
    jit_compile: Mapped[bool | None] = mapped_column(Boolean)
    # Training options (revision 0010); null where a spec leaves them out and trains as before they existed.
    early_stopping_monitor: Mapped[Monitor | None] = mapped_column(_enum(Monitor))
    early_stopping_patience: Mapped[int | None] = mapped_column(Integer)
    early_stopping_min_delta: Mapped[float | None] = mapped_column(Float)
    # A schedule's object, as its JSON (training/options.py: told apart by its `type`).
    lr_schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    weight_decay: Mapped[float | None] = mapped_column(Float)
    clipnorm: Mapped[float | None] = mapped_column(Float)
    clipvalue: Mapped[float | None] = mapped_column(Float)
    label_smoothing: Mapped[float | None] = mapped_column(Float)
    # "balanced", or weights by class name.
    class_weight: Mapped[str | dict[str, float] | None] = mapped_column(JSON(none_as_null=True))
    # The job.
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweep.id", ondelete="SET NULL"), index=True)
    # Who submitted it: only they (and admins) can see it or act on it. See domain/access.py.
    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    queue: Mapped[str] = mapped_column(String(100))
    status: Mapped[Status] = mapped_column(_enum(Status), index=True, default=Status.QUEUED)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    # Things the run did differently from what was asked, e.g. mixed precision ignored on a CPU.
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    worker: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(200))
    # The fencing token: the number of the attempt allowed to write. Every write an attempt makes is
    # conditional on it, so an attempt presumed dead (and superseded) can never write again. Never reused.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts lost without a word (no heartbeat): past EPOCHAL_MAX_ATTEMPTS the job fails. Reset by a retry.
    lost_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A running attempt renews this with its heartbeat; past it, the reaper presumes the attempt dead.
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # A queued job nobody claimed by then is published again (claims are idempotent; duplicates do nothing).
    next_publish_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    publish_count: Mapped[int] = mapped_column(Integer, default=0)
    # Fair-share dispatch (domain/dispatch.py): when the dispatcher released this queued job to the broker, null
    # while it waits in the database for a free slot. A queued job with it set holds a slot until it is claimed.
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # When it last became queued from outside (submitted, retried): its queue wait runs from here to its start.
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set by an admin; added to the owner's priority. Higher goes first, before fair share is considered.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_val_accuracy: Mapped[float | None] = mapped_column(Float)
    # The epoch after which early stopping ended training (then evaluated as usual); null: it trained every epoch.
    stopped_early_at: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    metrics: Mapped[list[EpochMetric]] = relationship(
        back_populates="experiment",
        order_by="EpochMetric.epoch",
        cascade="all, delete-orphan",
    )
    evaluation: Mapped[Evaluation | None] = relationship(back_populates="experiment", cascade="all, delete-orphan")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="experiment", cascade="all, delete-orphan")
    # Loaded with the experiment in one more query (not one per row), as every read shows them.
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="experiment", order_by="Attempt.number", cascade="all, delete-orphan", lazy="selectin"
    )
    sweep: Mapped[Sweep | None] = relationship(back_populates="experiments")


class Sweep(Base):
    """A grid of experiments created together from one base spec, to be compared."""

    __tablename__ = "sweep"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    grid: Mapped[dict[str, Any]] = mapped_column(JSON)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    experiments: Mapped[list[Experiment]] = relationship(back_populates="sweep", order_by="Experiment.id")


class EpochMetric(Base):
    __tablename__ = "epoch_metric"
    # One row per (experiment, epoch): a redelivered job can never duplicate history.
    __table_args__ = (UniqueConstraint("experiment_id", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    # The rate it trained at (revision 0013); null for epochs from before it was recorded.
    learning_rate: Mapped[float | None] = mapped_column(Float)
    # The attempt that trained it: after a resume, the earlier epochs keep their first attempt's number.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    experiment: Mapped[Experiment] = relationship(back_populates="metrics")


class Evaluation(Base):
    __tablename__ = "evaluation"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), primary_key=True)
    test_loss: Mapped[float | None] = mapped_column(Float)
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    labels: Mapped[list[str]] = mapped_column(JSON)
    confusion_matrix: Mapped[list[list[int]]] = mapped_column(JSON)
    classification_report: Mapped[dict[str, Any]] = mapped_column(JSON)

    experiment: Mapped[Experiment] = relationship(back_populates="evaluation")


class Artifact(Base):
    __tablename__ = "artifact"
    __table_args__ = (UniqueConstraint("experiment_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # Deferred: listing artifacts must not pull megabytes of weights.
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    experiment: Mapped[Experiment] = relationship(back_populates="artifacts")


class Attempt(Base):
    """One claim of a job by a worker process: where it ran, from which epoch, and how it ended."""

    __tablename__ = "attempt"
    __table_args__ = (UniqueConstraint("experiment_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int | None] = mapped_column(Integer)
    resumed_from_epoch: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # succeeded | failed | cancelled | lost | interrupted | timed_out; null while it runs.
    outcome: Mapped[str | None] = mapped_column(String(20))
    cause: Mapped[str | None] = mapped_column(Text)
    # What this attempt's worker process really ran, written by it when training starts (worker/jobs.py
    # record_device): a model card reports these, never the versions of the process that reads them.
    device: Mapped[str | None] = mapped_column(String(200))
    python_version: Mapped[str | None] = mapped_column(String(40))
    tensorflow_version: Mapped[str | None] = mapped_column(String(40))
    keras_version: Mapped[str | None] = mapped_column(String(40))
    numpy_version: Mapped[str | None] = mapped_column(String(40))
    service_version: Mapped[str | None] = mapped_column(String(100))  # EPOCHAL_VERSION, the git commit, or 0.1.0

    experiment: Mapped[Experiment] = relationship(back_populates="attempts")


class ResumeState(Base):
    """The latest finished epoch's training state, written with that epoch's row, so a new attempt continues there."""

    __tablename__ = "resume_state"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    # Weights and optimizer variables (an .npz); deferred, like every blob, so reading the row stays cheap.
    state: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    state_sha256: Mapped[str] = mapped_column(String(64))
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_val_accuracy: Mapped[float | None] = mapped_column(Float)
    # The best checkpoint so far (best_model.h5): it may come from an earlier epoch than `state`.
    best_checkpoint: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# Epochs finished so far, derived from the rows themselves so it can never disagree with them.
Experiment.epochs_done = column_property(  # type: ignore[attr-defined]
    select(func.count(EpochMetric.id)).where(EpochMetric.experiment_id == Experiment.id).scalar_subquery()
)
