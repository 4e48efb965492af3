"""Who may see what, in one place: a user sees their own experiments and sweeps, an admin sees all.

Every router finds experiments and sweeps through these functions. Another user's resource is `NotFound`
with the same words as a missing one, so ids reveal nothing about other people's work. A registered model
is the one thing a user can share: a public one is read (and predicted with) by every user, and changed,
like a private one, by its owner or an admin only.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from domain.errors import Forbidden, NotFound
from models import Artifact, Evaluation, Experiment, RegisteredModel, Sweep, Visibility
from models.queries import best_experiment
from models.users import User
from training.bounds import INT32_MAX

# The largest id any row can have: ids are INTEGER columns, 32-bit on PostgreSQL (a larger one in a query is
# an error there, not an empty answer). A larger id cannot exist, so it is a 404 before the database is asked.
MAX_ID = INT32_MAX
S = TypeVar("S", bound=Select[*tuple[Any, ...]])  # a select of any columns


def in_id_range(ident: int) -> bool:
    """Whether a row can have this id; one that cannot is a 404 without asking the database."""
    return 1 <= ident <= MAX_ID


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
    """The experiment, if the user may see it; otherwise the same NotFound as for one that does not exist."""
    experiment = _visible(session, user, Experiment, experiment_id, [selectinload(Experiment.evaluation)])
    if experiment is None:
        raise NotFound(f"experiment {experiment_id} does not exist; GET /experiments lists the ones that do")
    assert isinstance(experiment, Experiment)
    return experiment


def visible_evaluation(session: Session, user: User, experiment_id: int) -> Evaluation:
    experiment = visible_experiment(session, user, experiment_id)
    if experiment.evaluation is None:
        raise NotFound(
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
        raise NotFound(
            f"experiment {experiment_id} has no artifact {name!r} (it is {experiment.status}); "
            f"GET /experiments/{experiment_id}/artifacts lists what it has"
        )
    return artifact


def visible_sweep(session: Session, user: User, sweep_id: int, *, with_runs: bool = True) -> Sweep:
    """The sweep with its experiments (and their metrics and evaluations) loaded, if the user may see it.

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
        raise NotFound(f"sweep {sweep_id} does not exist; GET /sweeps lists the ones that do")
    assert isinstance(sweep, Sweep)
    return sweep


def best_visible_experiment(session: Session, user: User, dataset: str) -> Experiment | None:
    """The best succeeded experiment on `dataset` among those the user may see."""
    return best_experiment(session, dataset, owner_id=owner_filter(user))


def readable_models(statement: S, user: User) -> S:
    """`statement` limited to the registered models the user may read: their own and the public ones (all, for an
    admin)."""
    if user.admin:
        return statement
    return statement.where(or_(RegisteredModel.owner_id == user.id, RegisteredModel.visibility == Visibility.PUBLIC))


def visible_model(session: Session, user: User, name: str) -> RegisteredModel:
    """The registered model, if the user may read it; otherwise the same NotFound as for one that does not exist."""
    model = session.scalars(readable_models(select(RegisteredModel).where(RegisteredModel.name == name), user)).first()
    if model is None:
        raise NotFound(f"model {name!r} does not exist; GET /models lists the ones you can use")
    return model


def changeable_model(session: Session, user: User, name: str) -> RegisteredModel:
    """The registered model, if the user may change it (its owner, or an admin); Forbidden for another user's public
    model, which they can read, and NotFound for what they cannot."""
    model = visible_model(session, user, name)
    if not user.admin and model.owner_id != user.id:
        raise Forbidden(f"model {name!r} is another user's public model: only its owner or an admin can change it")
    return model
