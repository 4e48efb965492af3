"""The model registry: named models, numbered immutable versions made from experiments, and aliases moved atomically.

Who may read or change a model is `domain/access.py` (visible_model, changeable_model). Every change to a model's
versions or aliases happens under the model's lock (models/registry.py lock_model): two registrations never take
the same number, and two promotions of one alias are applied one after the other, each recorded with the version
it really moved from. Each function that changes something commits, and announces what it changed to every API
process (models/change_notices.py): they hold where a reference or a dataset's default resolved to, per caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.access import changeable_model, in_id_range, readable_models, visible_experiment, visible_model
from domain.errors import Conflict, Forbidden, Invalid, NotFound
from domain.lifecycle import Status
from models import (
    AliasMove,
    Artifact,
    DatasetDefault,
    Experiment,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    Visibility,
)
from models.base import utcnow
from models.change_notices import announce
from models.registry import ALIAS_LENGTH, NAME_LENGTH, lock_model
from models.users import User
from training.results import CHECKPOINT_NAME

# Names go in URLs, and a reference to a version is `name@alias` or `name:3`: neither may hold '@' or ':'.
NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_LENGTH - 1}}}$"
ALIAS_PATTERN = rf"^[A-Za-z][A-Za-z0-9_-]{{0,{ALIAS_LENGTH - 1}}}$"
DEFAULT_ALIAS = "production"  # what a reference to a model by its name alone means


@dataclass(frozen=True)
class Ref:
    """Which version a prediction wants: by alias (`name`, `name@alias`) or by number (`name:3`)."""

    model: str
    alias: str | None = None
    number: int | None = None


def _changed(model_id: int) -> str:
    # What API processes hear after the commit: a reference to this model may now resolve elsewhere, or not at all.
    return f"model:{model_id}"


def _default_changed(dataset: str) -> str:
    return f"default:{dataset}"


def parse_ref(ref: str) -> Ref:
    """`name` (its @production), `name@alias` or `name:N`; Invalid, saying which forms there are, for anything else."""
    forms = "use NAME (its @production alias), NAME@ALIAS or NAME:VERSION, e.g. digits, digits@staging, digits:3"
    name, at, alias = ref.partition("@")
    if at:
        if not re.fullmatch(ALIAS_PATTERN, alias):
            raise Invalid(f"{ref!r}: {alias!r} is not an alias name; {forms}")
        parsed = Ref(name, alias=alias)
    else:
        name, colon, number = ref.partition(":")
        if colon:
            if not number.isdigit() or not 1 <= int(number) <= 2**31 - 1:
                raise Invalid(f"{ref!r}: {number!r} is not a version number (1, 2, 3...); {forms}")
            parsed = Ref(name, number=int(number))
        else:
            parsed = Ref(name, alias=DEFAULT_ALIAS)
    if not re.fullmatch(NAME_PATTERN, parsed.model):
        raise Invalid(f"{ref!r}: {parsed.model!r} is not a model name; {forms}")
    return parsed


def create_model(
    session: Session, user: User, name: str, visibility: Visibility, description: str | None
) -> RegisteredModel:
    """A new model owned by `user`, committed; Conflict if the name is taken (names are unique across users)."""
    taken = Conflict(f"a model named {name!r} already exists; choose another name (GET /models lists yours)")
    if session.scalars(select(RegisteredModel.id).where(RegisteredModel.name == name)).first() is not None:
        raise taken
    model = RegisteredModel(name=name, owner_id=user.id, visibility=visibility, description=description)
    session.add(model)
    try:
        session.commit()
    except IntegrityError:  # two creations of one name at once: the unique constraint decides
        session.rollback()
        raise taken from None
    return model


def list_models(session: Session, user: User) -> list[RegisteredModel]:
    """The models the user may read, by name."""
    return list(session.scalars(readable_models(select(RegisteredModel), user).order_by(RegisteredModel.name)))


def delete_model(session: Session, user: User, name: str) -> None:
    """Delete the model, its versions, aliases and their history (never the experiments), committed."""
    model = changeable_model(session, user, name)
    announce(session, _changed(model.id))
    session.delete(model)
    session.commit()


def register_version(session: Session, user: User, name: str, experiment_id: int) -> ModelVersion:
    """The model's next version, made from the user's succeeded experiment and pinned to its checkpoint's sha256."""
    model = changeable_model(session, user, name)
    experiment = visible_experiment(session, user, experiment_id)  # the caller's own (any, for an admin)
    if experiment.status is not Status.SUCCEEDED:
        raise Conflict(
            f"experiment {experiment_id} is {experiment.status}; only a succeeded experiment's checkpoint can be a "
            "version of a model: wait for it to succeed, or register another"
        )
    sha256 = session.scalars(
        select(Artifact.sha256).where(Artifact.experiment_id == experiment_id, Artifact.name == CHECKPOINT_NAME)
    ).first()
    if sha256 is None:
        raise Conflict(
            f"experiment {experiment_id} has no {CHECKPOINT_NAME}; a version needs a checkpoint "
            f"(GET /experiments/{experiment_id}/artifacts lists what it has)"
        )
    model_id = model.id
    lock_model(session, model_id)
    number = (session.scalar(select(func.max(ModelVersion.number)).where(ModelVersion.model_id == model_id)) or 0) + 1
    version = ModelVersion(
        model_id=model_id, number=number, experiment_id=experiment_id, checkpoint_sha256=sha256, created_by=user.id
    )
    session.add(version)
    announce(session, _changed(model_id))
    session.commit()
    return version


def versions_of(session: Session, model: RegisteredModel) -> list[ModelVersion]:
    return list(
        session.scalars(select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.number))
    )


def version_of(session: Session, model: RegisteredModel, number: int) -> ModelVersion:
    # A number no version can have (the column is 32-bit, as ids are) is not asked of the database: it overflows there.
    version = (
        session.scalars(
            select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.number == number)
        ).first()
        if in_id_range(number)
        else None
    )
    if version is None:
        raise NotFound(
            f"model {model.name!r} has no version {number}; GET /models/{model.name}/versions lists its versions"
        )
    return version


def aliases_of(session: Session, model: RegisteredModel) -> list[ModelAlias]:
    return list(session.scalars(select(ModelAlias).where(ModelAlias.model_id == model.id).order_by(ModelAlias.name)))


def alias_history(session: Session, model: RegisteredModel, alias: str | None = None) -> list[AliasMove]:
    """Every move of the model's aliases (of `alias` only, if given), oldest first."""
    statement = select(AliasMove).where(AliasMove.model_id == model.id)
    if alias is not None:
        statement = statement.where(AliasMove.alias == alias)
    return list(session.scalars(statement.order_by(AliasMove.id)))


def set_alias(session: Session, user: User, name: str, alias: str, number: int) -> AliasMove:
    """Point `alias` at version `number` and record the move, in one transaction under the model's lock."""
    model = changeable_model(session, user, name)
    version_of(session, model, number)  # versions are never deleted: it still exists once the lock is held
    model_id = model.id
    lock_model(session, model_id)
    # Read under the lock: the version it points at now is the one this move really moves it from.
    row = session.scalars(
        select(ModelAlias)
        .where(ModelAlias.model_id == model_id, ModelAlias.name == alias)
        .execution_options(populate_existing=True)
    ).first()
    previous = None if row is None else row.version
    now = utcnow()
    if row is None:
        session.add(ModelAlias(model_id=model_id, name=alias, version=number, moved_by=user.id, moved_at=now))
    else:
        row.version, row.moved_by, row.moved_at = number, user.id, now
    move = AliasMove(
        model_id=model_id, alias=alias, from_version=previous, to_version=number, moved_by=user.id, moved_at=now
    )
    session.add(move)
    announce(session, _changed(model_id))
    session.commit()
    return move


def delete_alias(session: Session, user: User, name: str, alias: str) -> AliasMove:
    """Remove `alias`, recording the move to nothing; NotFound if the model has no such alias."""
    model = changeable_model(session, user, name)
    model_id = model.id
    lock_model(session, model_id)
    row = session.scalars(
        select(ModelAlias)
        .where(ModelAlias.model_id == model_id, ModelAlias.name == alias)
        .execution_options(populate_existing=True)
    ).first()
    if row is None:
        session.rollback()
        raise NotFound(f"model {name!r} has no alias {alias!r}; GET /models/{name} lists its aliases")
    move = AliasMove(model_id=model_id, alias=alias, from_version=row.version, to_version=None, moved_by=user.id)
    session.execute(delete(ModelAlias).where(ModelAlias.id == row.id))
    session.add(move)
    announce(session, _changed(model_id))
    session.commit()
    return move


def resolve(session: Session, user: User, ref: str) -> tuple[RegisteredModel, ModelVersion]:
    """The model and version `ref` names, for a user who may read the model (NotFound otherwise)."""
    parsed = parse_ref(ref)
    model = visible_model(session, user, parsed.model)
    if parsed.number is not None:
        return model, version_of(session, model, parsed.number)
    number = session.scalars(
        select(ModelAlias.version).where(ModelAlias.model_id == model.id, ModelAlias.name == parsed.alias)
    ).first()
    if number is None:
        raise NotFound(
            f"model {model.name!r} has no alias {parsed.alias!r}; point it at a version with "
            f"PUT /models/{model.name}/aliases/{parsed.alias}, or name a version as {model.name}:N"
        )
    return model, version_of(session, model, number)


def version_experiment(session: Session, version: ModelVersion) -> Experiment:
    """The experiment a version was made from: whoever may read the model may use it (not only its owner)."""
    return session.get_one(Experiment, version.experiment_id)


def _default_row(session: Session, dataset: str, user_id: int | None) -> DatasetDefault | None:
    owner = DatasetDefault.user_id.is_(None) if user_id is None else DatasetDefault.user_id == user_id
    # The newest setting wins: two admins setting the class-wide default at once leave two rows, and the later reads.
    statement = select(DatasetDefault).where(DatasetDefault.dataset == dataset, owner)
    return session.scalars(statement.order_by(DatasetDefault.id.desc()).limit(1)).first()


def defaults_of(session: Session, user: User, dataset: str) -> tuple[DatasetDefault | None, DatasetDefault | None]:
    """The user's own default model for `dataset`, and the class-wide one an admin set; None where there is none."""
    return _default_row(session, dataset, user.id), _default_row(session, dataset, None)


def _checked_for(session: Session, user: User, ref: str, dataset: str) -> tuple[RegisteredModel, Ref]:
    model, version = resolve(session, user, ref)
    trained_on = version_experiment(session, version).dataset
    if trained_on != dataset:
        raise Conflict(f"{ref} was trained on {trained_on}, not {dataset}; choose a model of {dataset}")
    return model, parse_ref(ref)


def set_default(session: Session, user: User, dataset: str, ref: str, *, for_everyone: bool) -> DatasetDefault:
    """Make `ref` what the user's (or, `for_everyone`, every user's) dataset predictions use, committed.

    Only an admin sets the class-wide default, and only to a public model: every user must be able to use it.
    """
    if for_everyone and not user.admin:
        raise Forbidden("only an admin sets the class-wide default model; set your own without for_everyone")
    model, parsed = _checked_for(session, user, ref, dataset)
    if for_everyone and model.visibility is not Visibility.PUBLIC:
        raise Conflict(f"model {model.name!r} is private; the class-wide default must be a public model")
    owner = None if for_everyone else user.id
    owner_is = DatasetDefault.user_id.is_(None) if owner is None else DatasetDefault.user_id == owner
    session.execute(delete(DatasetDefault).where(DatasetDefault.dataset == dataset, owner_is))
    row = DatasetDefault(
        dataset=dataset,
        user_id=owner,
        model_id=model.id,
        alias=parsed.alias,
        version=parsed.number,
        set_by=user.id,
    )
    session.add(row)
    announce(session, _default_changed(dataset))
    session.commit()
    return row


def clear_default(session: Session, user: User, dataset: str, *, for_everyone: bool) -> None:
    """Remove the user's own (or the class-wide) default model for `dataset`, committed; NotFound if there is none."""
    if for_everyone and not user.admin:
        raise Forbidden("only an admin removes the class-wide default model")
    row = _default_row(session, dataset, None if for_everyone else user.id)
    if row is None:
        whose = "no class-wide" if for_everyone else "you have no"
        raise NotFound(f"{whose} default model for {dataset}; GET /datasets/{dataset}/default-model")
    owner_is = DatasetDefault.user_id.is_(None) if for_everyone else DatasetDefault.user_id == user.id
    session.execute(delete(DatasetDefault).where(DatasetDefault.dataset == dataset, owner_is))
    announce(session, _default_changed(dataset))
    session.commit()


def default_version(session: Session, user: User, dataset: str) -> ModelVersion | None:
    """The version the user's predictions on `dataset` use: their own default, else the class-wide one, else None
    (their best experiment, as without a registry). A default that no longer resolves is a Conflict saying so."""
    mine, everyone = defaults_of(session, user, dataset)
    chosen = mine or everyone
    if chosen is None:
        return None
    whose = "your" if chosen is mine else "the class-wide"
    try:
        _model, version = resolve(session, user, chosen.ref)
    except NotFound as exc:
        raise Conflict(
            f"{whose} default model for {dataset}, {chosen.ref}, does not resolve ({exc.detail}); "
            f"set another with PUT /datasets/{dataset}/default-model"
        ) from exc
    if version_experiment(session, version).dataset != dataset:
        raise Conflict(f"{whose} default model for {dataset}, {chosen.ref}, now points at a model of another dataset")
    return version
