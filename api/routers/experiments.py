"""Experiments: submit, list, read results, download the checkpoint, cancel, retry."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from api.http.auth import AdminUser, BearerKey, CurrentUser, KeyVerifiedRoute, as_caller
from api.http.deps import SessionDep, SettingsDep, publisher
from api.http.errors import responses
from api.http.openapi import file_response
from api.http.params import DatasetFilter, ExperimentId, PageLimit, PageOffset, QuerySweepId
from api.http.specs import against_datasets
from api.reports.standings import reads_with_standing
from api.schemas.experiments import (
    ArtifactRead,
    ConfusionMatrixRead,
    EpochMetricRead,
    EvaluationRead,
    ExperimentCreate,
    ExperimentPage,
    ExperimentRead,
    PriorityUpdate,
)
from api.serving.integrity import verified
from api.serving.model_card import ModelCard, model_card
from api.serving.model_contract import model_input
from config import get_settings
from domain import lifecycle
from domain.access import owned, visible_artifact, visible_evaluation, visible_experiment
from domain.dispatch import set_priority
from domain.errors import Conflict
from domain.lifecycle import Move, Status
from domain.quotas import check_active_jobs, check_sweep_size
from domain.submission import submit
from infra import events
from models import Experiment, Sweep, User
from models.specs import dataset_info_of, repeated_experiments, spec_of
from training.spec import Optimizer

router = APIRouter(prefix="/experiments", tags=["experiments"])
# POST /experiments verifies the key in the same worker-thread hop as the submission (`as_caller`, api/http/auth.py),
# because every sync dependency is a thread hop of its own (docs/results/performance.md, "Why the code is shaped so").
# So it is a router of its own, which api/main.py guards with `bearer_key`, not `current_user`.
submissions = APIRouter(prefix="/experiments", tags=["experiments"], route_class=KeyVerifiedRoute)


@submissions.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExperimentRead,
    responses=responses(400, 404, 409, 413, 422, 429, 503),
)
async def create_experiment(
    body: ExperimentCreate, request: Request, key: BearerKey, response: Response
) -> ExperimentRead:
    """Store an experiment and queue it for training. Poll the Location to follow it.

    With `repeats` > 1 the runs form a sweep of one configuration: the response is the first run, and its
    `sweep_id` leads to their statistics (GET /sweeps/{id}).
    """
    return await as_caller(request, key, partial(_create_experiment, body, response))


def _create_experiment(body: ExperimentCreate, response: Response, session: Session, user: User) -> ExperimentRead:
    settings = get_settings()
    body = against_datasets(session, user, body)
    if body.repeats > 1:
        check_sweep_size(settings, user, body.repeats)
    experiments = repeated_experiments(body, body.repeats)
    sweep = None
    if body.repeats > 1:
        spec = body.model_dump(mode="json", exclude={"repeats", "queue"}, exclude_none=True)
        sweep = Sweep(name=body.name, base=spec, grid={}, owner_id=user.id)
    for experiment in experiments:
        experiment.queue = body.queue or settings.default_queue
        experiment.owner_id = user.id
        experiment.sweep = sweep
    submit(session, experiments, settings, publisher, new_sweep=sweep, quota_of=user)
    response.headers["Location"] = f"/experiments/{experiments[0].id}"
    # From the row in memory: the session's connection went back to the pool at the commit, and stays there.
    return ExperimentRead.of(experiments[0], new=True)


@router.get("", response_model=ExperimentPage, responses=responses(422))
def list_experiments(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    dataset: DatasetFilter = None,
    optimizer: Optimizer | None = None,
    sweep_id: QuerySweepId = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> ExperimentPage:
    """Your experiments (an admin: everyone's), newest first, filtered by any of status, dataset, optimizer, sweep;
    queued ones with their position and estimated start."""
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
    total = session.scalar(owned(select(func.count(Experiment.id)), user, Experiment).where(*conditions)) or 0
    rows = session.scalars(
        owned(select(Experiment), user, Experiment)
        .where(*conditions)
        .options(selectinload(Experiment.evaluation))
        .order_by(Experiment.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    items = reads_with_standing(session, settings, rows)
    return ExperimentPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{experiment_id}", response_model=ExperimentRead, responses=responses(404, 422))
def read_experiment(
    experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> ExperimentRead:
    """Status, spec, where it ran, and a summary of its results so far; while queued, its position in the queue
    and an estimate of when it starts."""
    (read,) = reads_with_standing(session, settings, [visible_experiment(session, user, experiment_id)])
    return read


@router.put("/{experiment_id}/priority", response_model=ExperimentRead, responses=responses(400, 403, 404, 413, 422))
def put_priority(
    experiment_id: ExperimentId, body: PriorityUpdate, session: SessionDep, admin: AdminUser
) -> ExperimentRead:
    """Set the job's priority (added to its owner's): higher is dispatched first, before fair share. Admins only."""
    visible_experiment(session, admin, experiment_id)
    set_priority(session, experiment_id, body.priority)
    session.expire_all()
    return ExperimentRead.of(visible_experiment(session, admin, experiment_id))


@router.get("/{experiment_id}/card", response_model=ModelCard, responses=responses(404, 422))
def read_card(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> ModelCard:
    """The experiment's model card: spec, dataset, figures, input contract and the training record (seed, device,
    and the Python, TensorFlow, Keras, NumPy and service versions each attempt's worker ran)."""
    return model_card(visible_experiment(session, user, experiment_id))


@router.get("/{experiment_id}/metrics", response_model=list[EpochMetricRead], responses=responses(404, 422))
def read_metrics(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> list[EpochMetricRead]:
    """One row per finished epoch: loss, accuracy, val_loss, val_accuracy, seconds."""
    experiment = visible_experiment(session, user, experiment_id)
    return [EpochMetricRead.model_validate(m) for m in experiment.metrics]


@router.get("/{experiment_id}/evaluation", response_model=EvaluationRead, responses=responses(404, 422))
def read_evaluation(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> EvaluationRead:
    """The best checkpoint's test loss and accuracy, confusion matrix and classification report."""
    evaluation = visible_evaluation(session, user, experiment_id)
    return EvaluationRead(
        experiment_id=experiment_id,
        test_loss=evaluation.test_loss,
        test_accuracy=evaluation.test_accuracy,
        confusion_matrix=ConfusionMatrixRead(labels=evaluation.labels, matrix=evaluation.confusion_matrix),
        classification_report=evaluation.classification_report,
    )


@router.get("/{experiment_id}/confusion-matrix", response_model=ConfusionMatrixRead, responses=responses(404, 422))
def read_confusion_matrix(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> ConfusionMatrixRead:
    """Rows are true classes, columns predicted classes, in the order of `labels`."""
    evaluation = visible_evaluation(session, user, experiment_id)
    return ConfusionMatrixRead(labels=evaluation.labels, matrix=evaluation.confusion_matrix)


@router.get("/{experiment_id}/artifacts", response_model=list[ArtifactRead], responses=responses(404, 422))
def list_artifacts(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> list[ArtifactRead]:
    """Files the run produced (the best checkpoint), with size and sha256, and what the checkpoint takes as input:
    raw 0..255 pixels as float32, which it rescales itself (feeding it x / 255 scales twice)."""
    experiment = visible_experiment(session, user, experiment_id)
    contract = model_input(dataset_info_of(experiment, session)).model_dump()
    return [
        ArtifactRead(
            name=a.name,
            media_type=a.media_type,
            size=a.size,
            sha256=a.sha256,
            url=f"/experiments/{experiment_id}/artifacts/{a.name}",
            created_at=a.created_at,
            **(contract if a.name.endswith(".h5") else {}),
        )
        for a in experiment.artifacts
    ]


@router.get(
    "/{experiment_id}/artifacts/{name}",
    response_class=Response,
    # Every artifact the worker stores is the checkpoint, an HDF5 file.
    responses={200: file_response("The file.", "application/x-hdf5"), **responses(404, 409, 422)},
)
def download_artifact(experiment_id: ExperimentId, name: str, session: SessionDep, user: CurrentUser) -> Response:
    """Download a file, e.g. best_model.h5 (loadable with keras.models.load_model). 409 if its stored bytes no
    longer match the sha256 recorded when it was written (the check predictions make too)."""
    artifact = visible_artifact(session, user, experiment_id, name)
    return Response(
        content=verified(artifact.content, artifact.sha256, experiment_id, artifact.name),
        media_type=artifact.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{artifact.name}"',
            "ETag": f'"{artifact.sha256}"',
        },
    )


@router.post("/{experiment_id}/cancel", response_model=ExperimentRead, responses=responses(404, 409, 422))
def cancel_experiment(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> ExperimentRead:
    """A queued job never starts; a running one stops at the end of its current epoch."""
    visible_experiment(session, user, experiment_id)
    # A row its worker keeps locked is waited for a bounded time: 503 with Retry-After, never a hung request.
    lifecycle.cancel(session, experiment_id)
    session.commit()
    session.expire_all()
    experiment = visible_experiment(session, user, experiment_id)
    if experiment.status is Status.CANCELLED:
        events.status(experiment_id, experiment.sweep_id, "cancelled")
    return ExperimentRead.of(experiment)


@router.post(
    "/{experiment_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExperimentRead,
    responses=responses(404, 409, 422, 429, 503),
)
def retry_experiment(
    experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> ExperimentRead:
    """Queue a failed or cancelled experiment again, from scratch: its old epochs and results are dropped."""
    experiment = visible_experiment(session, user, experiment_id)
    try:
        spec_of(experiment, session)
    except LookupError as exc:  # its dataset version was deleted since it ran: it cannot train again
        raise Conflict(f"{exc} (experiment {experiment_id} cannot be retried)") from None
    # The quota counts the owner's jobs, also when an admin retries someone else's.
    owner = session.get(User, experiment.owner_id)
    if owner is not None and experiment.status in lifecycle.sources(Move.RETRY):
        check_active_jobs(session, settings, owner, adding=1)
    lifecycle.retry(session, experiment_id)
    session.commit()
    session.expire_all()
    experiment = visible_experiment(session, user, experiment_id)
    submit(session, [experiment], settings, publisher, owner=owner)  # the owner's network limits too
    return ExperimentRead.of(visible_experiment(session, user, experiment_id))
