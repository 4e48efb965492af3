"""Experiments: submit, list, read results, download the checkpoint, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from api.deps import SessionDep, SettingsDep
from api.errors import conflict, not_found
from api.queue import BrokerUnavailable, enqueue_training
from api.schemas import (
    ArtifactRead,
    ConfusionMatrixRead,
    EpochMetricRead,
    EvaluationRead,
    ExperimentCreate,
    ExperimentPage,
    ExperimentRead,
)
from models import Artifact, EpochMetric, Evaluation, Experiment
from models.base import utcnow
from models.db import rows_changed
from models.specs import experiment_from_spec
from training.spec import Dataset, Optimizer, Status

router = APIRouter(prefix="/experiments", tags=["experiments"])


def get_experiment(session: Session, experiment_id: int) -> Experiment:
    experiment = session.get(Experiment, experiment_id, options=[selectinload(Experiment.evaluation)])
    if experiment is None:
        raise not_found(f"experiment {experiment_id} does not exist; GET /experiments lists the ones that do")
    return experiment


def submit(session: Session, experiments: list[Experiment]) -> None:
    """Commit queued rows, then enqueue each; if the broker refuses, every row not yet queued ends failed."""
    session.add_all(experiments)
    # Commit before enqueueing: a worker must never receive an id that is not in the database yet.
    session.commit()
    for position, experiment in enumerate(experiments):
        try:
            enqueue_training(experiment.id, experiment.queue)
        except BrokerUnavailable as exc:
            # Failed with the reason, not left queued forever: nothing will ever deliver these.
            stranded = experiments[position:]
            for row in stranded:
                row.status, row.error, row.finished_at = Status.FAILED, f"could not be queued: {exc}", utcnow()
            session.commit()
            ids = ", ".join(str(row.id) for row in stranded)
            raise HTTPException(
                status_code=503,
                detail=f"experiments {ids} were stored as failed because they could not be queued: {exc}; "
                "check EPOCHAL_BROKER_URL and GET /health, then submit again",
            ) from exc


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ExperimentRead)
def create_experiment(
    body: ExperimentCreate, session: SessionDep, settings: SettingsDep, response: Response
) -> ExperimentRead:
    """Store an experiment and queue it for training. Poll the Location to follow it."""
    experiment = experiment_from_spec(body)
    experiment.queue = body.queue or settings.default_queue
    submit(session, [experiment])
    response.headers["Location"] = f"/experiments/{experiment.id}"
    return ExperimentRead.of(get_experiment(session, experiment.id))


@router.get("", response_model=ExperimentPage)
def list_experiments(
    session: SessionDep,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    dataset: Dataset | None = None,
    optimizer: Optimizer | None = None,
    sweep_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ExperimentPage:
    """Experiments, newest first, filtered by any of status, dataset, optimizer and sweep."""
    conditions = [
        column == value
        for column, value in (
            (Experiment.status, status_),
            (Experiment.dataset, dataset),
            (Experiment.optimizer, optimizer),
            (Experiment.sweep_id, sweep_id),
        )
        if value is not None
    ]
    total = session.scalar(select(func.count(Experiment.id)).where(*conditions)) or 0
    rows = session.scalars(
        select(Experiment)
        .where(*conditions)
        .options(selectinload(Experiment.evaluation))
        .order_by(Experiment.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return ExperimentPage(items=[ExperimentRead.of(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{experiment_id}", response_model=ExperimentRead)
def read_experiment(experiment_id: int, session: SessionDep) -> ExperimentRead:
    """Status, spec, where it ran, and a summary of its results so far."""
    return ExperimentRead.of(get_experiment(session, experiment_id))


@router.get("/{experiment_id}/metrics", response_model=list[EpochMetricRead])
def read_metrics(experiment_id: int, session: SessionDep) -> list[EpochMetricRead]:
    """One row per finished epoch: loss, accuracy, val_loss, val_accuracy, seconds."""
    experiment = get_experiment(session, experiment_id)
    return [EpochMetricRead.model_validate(m) for m in experiment.metrics]


def get_evaluation(session: Session, experiment_id: int) -> Evaluation:
    experiment = get_experiment(session, experiment_id)
    if experiment.evaluation is None:
        raise not_found(
            f"experiment {experiment_id} has no evaluation: it is {experiment.status}, "
            "and the evaluation is stored when training succeeds"
        )
    return experiment.evaluation


@router.get("/{experiment_id}/evaluation", response_model=EvaluationRead)
def read_evaluation(experiment_id: int, session: SessionDep) -> EvaluationRead:
    """The best checkpoint's test loss and accuracy, confusion matrix and classification report."""
    evaluation = get_evaluation(session, experiment_id)
    return EvaluationRead(
        experiment_id=experiment_id,
        test_loss=evaluation.test_loss,
        test_accuracy=evaluation.test_accuracy,
        confusion_matrix=ConfusionMatrixRead(labels=evaluation.labels, matrix=evaluation.confusion_matrix),
        classification_report=evaluation.classification_report,
    )


@router.get("/{experiment_id}/confusion-matrix", response_model=ConfusionMatrixRead)
def read_confusion_matrix(experiment_id: int, session: SessionDep) -> ConfusionMatrixRead:
    """Rows are true classes, columns predicted classes, in the order of `labels`."""
    evaluation = get_evaluation(session, experiment_id)
    return ConfusionMatrixRead(labels=evaluation.labels, matrix=evaluation.confusion_matrix)


@router.get("/{experiment_id}/artifacts", response_model=list[ArtifactRead])
def list_artifacts(experiment_id: int, session: SessionDep) -> list[ArtifactRead]:
    """Files the run produced (the best checkpoint), with size and sha256."""
    experiment = get_experiment(session, experiment_id)
    return [
        ArtifactRead(
            name=a.name,
            media_type=a.media_type,
            size=a.size,
            sha256=a.sha256,
            url=f"/experiments/{experiment_id}/artifacts/{a.name}",
            created_at=a.created_at,
        )
        for a in experiment.artifacts
    ]


def get_artifact(session: Session, experiment_id: int, name: str) -> Artifact:
    experiment = get_experiment(session, experiment_id)
    artifact = session.scalars(
        select(Artifact).where(Artifact.experiment_id == experiment_id, Artifact.name == name)
    ).first()
    if artifact is None:
        raise not_found(
            f"experiment {experiment_id} has no artifact {name!r} (it is {experiment.status}); "
            f"GET /experiments/{experiment_id}/artifacts lists what it has"
        )
    return artifact


@router.get(
    "/{experiment_id}/artifacts/{name}",
    response_class=Response,
    responses={200: {"content": {"application/x-hdf5": {}}, "description": "The file."}},
)
def download_artifact(experiment_id: int, name: str, session: SessionDep) -> Response:
    """Download a file, e.g. best_model.h5 (loadable with keras.models.load_model)."""
    artifact = get_artifact(session, experiment_id, name)
    return Response(
        content=artifact.content,
        media_type=artifact.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{artifact.name}"',
            "ETag": f'"{artifact.sha256}"',
        },
    )


@router.post("/{experiment_id}/cancel", response_model=ExperimentRead)
def cancel_experiment(experiment_id: int, session: SessionDep) -> ExperimentRead:
    """A queued job never starts; a running one stops at the end of its current epoch."""
    get_experiment(session, experiment_id)
    # Conditional updates, so a worker claiming or finishing the job at the same moment cannot be overwritten.
    never_started = rows_changed(
        session,
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == Status.QUEUED)
        .values(status=Status.CANCELLED, cancel_requested=True, finished_at=utcnow()),
    )
    flagged_running = 0
    if not never_started:
        flagged_running = rows_changed(
            session,
            update(Experiment)
            .where(Experiment.id == experiment_id, Experiment.status == Status.RUNNING)
            .values(cancel_requested=True),
        )
    session.commit()
    session.expire_all()
    experiment = get_experiment(session, experiment_id)
    if not (never_started or flagged_running):
        raise conflict(f"experiment {experiment_id} already finished ({experiment.status}); there is nothing to cancel")
    return ExperimentRead.of(experiment)


@router.post("/{experiment_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=ExperimentRead)
def retry_experiment(experiment_id: int, session: SessionDep) -> ExperimentRead:
    """Queue a failed or cancelled experiment again, from scratch: its old epochs and results are dropped."""
    get_experiment(session, experiment_id)
    # Conditional, so a retry cannot race a worker that is still finishing the job.
    reopened = rows_changed(
        session,
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status.in_([Status.FAILED, Status.CANCELLED]))
        .values(
            status=Status.QUEUED,
            cancel_requested=False,
            error=None,
            warnings=[],
            worker=None,
            device=None,
            best_epoch=None,
            best_val_accuracy=None,
            started_at=None,
            finished_at=None,
        ),
    )
    if not reopened:
        session.rollback()
        experiment = get_experiment(session, experiment_id)
        raise conflict(
            f"experiment {experiment_id} is {experiment.status}; only failed or cancelled experiments can be retried"
        )
    for table in (EpochMetric, Evaluation, Artifact):
        session.execute(delete(table).where(table.experiment_id == experiment_id))
    session.commit()
    session.expire_all()
    experiment = get_experiment(session, experiment_id)
    submit(session, [experiment])
    return ExperimentRead.of(get_experiment(session, experiment_id))
