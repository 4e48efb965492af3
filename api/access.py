"""Who may see what, in one place: a user sees their own experiments and sweeps, an admin sees all. And the
ids and pages clients name them by, with their ranges.

Every router finds experiments and sweeps through these functions. Another user's resource is a 404
with the same words as a missing one, so ids reveal nothing about other people's work.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Path, Query
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from api.errors import not_found
from models import Artifact, Evaluation, Experiment, Sweep
from models.queries import best_experiment
from models.users import User
from training.bounds import INT32_MAX, INT64_MAX, Between
from training.spec import Dataset

# The largest id any row can have: ids are INTEGER columns, 32-bit on PostgreSQL (a larger one in a query is
# an error there, not an empty answer). A larger id cannot exist, so it is a 404 before the database is asked.
MAX_ID = INT32_MAX
MAX_OFFSET = INT64_MAX  # OFFSET is a 64-bit integer on every supported database
S = TypeVar("S", bound=Select[*tuple[Any, ...]])  # a select of any columns


def id_path(description: str) -> Any:
    """A path id: its range is in the document, but an id outside it is a 404, not a 422.

    Such an id is a resource that does not exist, checked by `in_id_range` in the lookup; it must never reach the
    database, which overflows on it.
    """
    return Path(
        description=f"{description} From 1 to {MAX_ID}: any other number is a 404, as for an id not in use.",
        examples=[1],
        json_schema_extra={"minimum": 1, "maximum": MAX_ID},
    )


def in_id_range(ident: int) -> bool:
    """Whether a row can have this id; one that cannot is a 404 without asking the database."""
    return 1 <= ident <= MAX_ID


ExperimentId = Annotated[int, id_path("An experiment id (yours, unless you are an admin).")]
SweepId = Annotated[int, id_path("A sweep id (yours, unless you are an admin).")]
UserId = Annotated[int, id_path("A user id, as GET /users lists them.")]
KeyId = Annotated[int, id_path("A key id, as GET /users lists them.")]
# Lists are read a page at a time, newest first. Past 64 bits an OFFSET is a database error, not an empty page.
MAX_PAGE = 500
PageLimit = Annotated[int, Between(1, MAX_PAGE), Query(description="How many to answer at most.")]
PageOffset = Annotated[int, Between(0, MAX_OFFSET), Query(description="How many of the newest to skip.")]
QuerySweepId = Annotated[Annotated[int, Between(1, MAX_ID)] | None, Query(description="Only this sweep's.")]


def owner_filter(user: User) -> int | None:
    """The owner id a user's queries are limited to; None for an admin, who sees everything."""
    return None if user.admin else user.id


def owned(statement: S, user: User, entity: type[Experiment] | type[Sweep]) -> S:
    """`statement` limited to rows of `entity` the user may see."""
    owner_id = owner_filter(user)
    return statement if owner_id is None else statement.where(entity.owner_id == owner_id)


def _visible(session: Session, user: User, entity: type[Any], ident: int, options: list[LoaderOption]) -> Any:
    if not in_id_range(ident):
        return None
    row = session.get(entity, ident, options=options)
    if row is None or (not user.admin and row.owner_id != user.id):
        return None
    return row


def visible_experiment(session: Session, user: User, experiment_id: int) -> Experiment:
    """The experiment, if the user may see it; otherwise the same 404 as for one that does not exist."""
    experiment = _visible(session, user, Experiment, experiment_id, [selectinload(Experiment.evaluation)])
    if experiment is None:
        raise not_found(f"experiment {experiment_id} does not exist; GET /experiments lists the ones that do")
    assert isinstance(experiment, Experiment)
    return experiment


def visible_evaluation(session: Session, user: User, experiment_id: int) -> Evaluation:
    experiment = visible_experiment(session, user, experiment_id)
    if experiment.evaluation is None:
        raise not_found(
            f"experiment {experiment_id} has no evaluation: it is {experiment.status}, "
            "and the evaluation is stored when training succeeds"
        )
    return experiment.evaluation


def visible_artifact(session: Session, user: User, experiment_id: int, name: str) -> Artifact:
    experiment = visible_experiment(session, user, experiment_id)
    artifact = session.scalars(
        select(Artifact).where(Artifact.experiment_id == experiment_id, Artifact.name == name)
    ).first()
    if artifact is None:
        raise not_found(
            f"experiment {experiment_id} has no artifact {name!r} (it is {experiment.status}); "
            f"GET /experiments/{experiment_id}/artifacts lists what it has"
        )
    return artifact


def visible_sweep(session: Session, user: User, sweep_id: int, *, with_runs: bool = True) -> Sweep:
    """The sweep with its experiments (and their metrics and evaluations) loaded, if the user may see it; or 404.

    `with_runs=False` loads the sweep row alone: enough to decide who may see it.
    """
    options: list[LoaderOption] = [
        selectinload(Sweep.experiments).selectinload(Experiment.metrics),
        selectinload(Sweep.experiments).selectinload(Experiment.evaluation),
    ]
    if not with_runs:
        options = []
    sweep = _visible(session, user, Sweep, sweep_id, options)
    if sweep is None:
        raise not_found(f"sweep {sweep_id} does not exist; GET /sweeps lists the ones that do")
    assert isinstance(sweep, Sweep)
    return sweep


def best_visible_experiment(session: Session, user: User, dataset: Dataset) -> Experiment | None:
    """The best succeeded experiment on `dataset` among those the user may see."""
    return best_experiment(session, dataset, owner_id=owner_filter(user))
