"""The model registry: named models, their numbered versions (experiments' checkpoints), aliases and model cards.

A private model is another user's 404; a public one is read by every user and changed by its owner or an admin
(domain/access.py). Predictions by model are in api/routers/predictions.py, beside the other prediction routes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from api.http.auth import CurrentUser
from api.http.deps import SessionDep
from api.http.errors import responses
from api.http.params import id_path
from api.schemas.registry import (
    AliasMoveRead,
    AliasSet,
    ModelCreate,
    ModelDetail,
    ModelRead,
    VersionCreate,
    VersionRead,
)
from api.serving.model_card import ModelCard, model_card
from domain import registry
from domain.access import visible_model
from domain.registry import ALIAS_PATTERN
from models import Experiment, ModelVersion, RegisteredModel

router = APIRouter(prefix="/models", tags=["models"])

NamePath = Annotated[str, Path(description="The model's name.", examples=["digits"])]
VersionPath = Annotated[int, id_path("A version number of the model (1, 2, 3...).")]
AliasPath = Annotated[
    str,
    Path(
        pattern=ALIAS_PATTERN,
        description="An alias name: a letter, then letters, digits, '_' or '-', at most 40 (e.g. production).",
        examples=["production"],
    ),
]

# Their own examples, so that a client generated from the document (or a fuzzer) trying the delete routes first
# does not delete what the examples of the other routes name.
DeletedNamePath = Annotated[str, Path(description="The model's name.", examples=["scratch"])]
DeletedAliasPath = Annotated[
    str, Path(pattern=ALIAS_PATTERN, description="The alias to remove (e.g. staging).", examples=["retired"])
]


def _latest(session: Session, model: RegisteredModel) -> int | None:
    return session.scalar(select(func.max(ModelVersion.number)).where(ModelVersion.model_id == model.id))


def _read(session: Session, model: RegisteredModel) -> ModelRead:
    return ModelRead.of(model, registry.aliases_of(session, model), _latest(session, model))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelRead, responses=responses(400, 409, 413, 422))
def create_model(body: ModelCreate, session: SessionDep, user: CurrentUser) -> ModelRead:
    """Register a model name, owned by you; add versions from your experiments with POST /models/{name}/versions."""
    model = registry.create_model(session, user, body.name, body.visibility, body.description)
    return _read(session, model)


@router.get("", response_model=list[ModelRead])
def list_models(session: SessionDep, user: CurrentUser) -> list[ModelRead]:
    """The models you can use: yours and every public one (an admin sees all), by name."""
    return [_read(session, model) for model in registry.list_models(session, user)]


@router.get("/{name}", response_model=ModelDetail, responses=responses(404, 422))
def read_model(name: NamePath, session: SessionDep, user: CurrentUser) -> ModelDetail:
    """The model with its versions, its aliases and every move of them."""
    model = visible_model(session, user, name)
    aliases = registry.aliases_of(session, model)
    return ModelDetail(
        **ModelRead.of(model, aliases, _latest(session, model)).model_dump(),
        versions=[VersionRead.of(model, v, aliases) for v in registry.versions_of(session, model)],
        history=[AliasMoveRead.of(m) for m in registry.alias_history(session, model)],
    )


@router.post(
    "/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=VersionRead,
    responses=responses(400, 403, 404, 409, 413, 422),
)
def create_version(name: NamePath, body: VersionCreate, session: SessionDep, user: CurrentUser) -> VersionRead:
    """A new version (the next number) from your succeeded experiment's checkpoint, pinned to its sha256.

    409 if the experiment has not succeeded or has no checkpoint; 404 if it is not yours.
    """
    version = registry.register_version(session, user, name, body.experiment_id)
    model = visible_model(session, user, name)
    return VersionRead.of(model, version, registry.aliases_of(session, model))


@router.get("/{name}/versions", response_model=list[VersionRead], responses=responses(404, 422))
def list_versions(name: NamePath, session: SessionDep, user: CurrentUser) -> list[VersionRead]:
    """Every version of the model, oldest first."""
    model = visible_model(session, user, name)
    aliases = registry.aliases_of(session, model)
    return [VersionRead.of(model, v, aliases) for v in registry.versions_of(session, model)]


@router.get("/{name}/versions/{version}", response_model=VersionRead, responses=responses(404, 422))
def read_version(name: NamePath, version: VersionPath, session: SessionDep, user: CurrentUser) -> VersionRead:
    """One version: the experiment it was made from and the aliases pointing at it."""
    model = visible_model(session, user, name)
    return VersionRead.of(model, registry.version_of(session, model, version), registry.aliases_of(session, model))


@router.get("/{name}/versions/{version}/card", response_model=ModelCard, responses=responses(404, 422))
def read_version_card(name: NamePath, version: VersionPath, session: SessionDep, user: CurrentUser) -> ModelCard:
    """The version's model card: spec, dataset, validation and test figures, input contract, and the training
    record (seed, device, and the Python, TensorFlow, Keras, NumPy and service versions its worker ran)."""
    model = visible_model(session, user, name)
    row = registry.version_of(session, model, version)
    experiment = session.get_one(Experiment, row.experiment_id, options=[selectinload(Experiment.evaluation)])
    return model_card(experiment, model.name, row.number)


@router.put("/{name}/aliases/{alias}", response_model=AliasMoveRead, responses=responses(400, 403, 404, 413, 422))
def set_alias(
    name: NamePath, alias: AliasPath, body: AliasSet, session: SessionDep, user: CurrentUser
) -> AliasMoveRead:
    """Point the alias at a version (creating it if new), atomically; the move is recorded with who and when.

    Predictions by `name@alias` (and by `name` alone, for `production`) use the new version from the next request.
    """
    return AliasMoveRead.of(registry.set_alias(session, user, name, alias, body.version))


@router.delete("/{name}/aliases/{alias}", response_model=AliasMoveRead, responses=responses(403, 404, 422))
def delete_alias(name: NamePath, alias: DeletedAliasPath, session: SessionDep, user: CurrentUser) -> AliasMoveRead:
    """Remove the alias; the removal is recorded in its history like a move (to_version null)."""
    return AliasMoveRead.of(registry.delete_alias(session, user, name, alias))


@router.get("/{name}/aliases/{alias}/history", response_model=list[AliasMoveRead], responses=responses(404, 422))
def alias_history(name: NamePath, alias: AliasPath, session: SessionDep, user: CurrentUser) -> list[AliasMoveRead]:
    """Every move of the alias, oldest first: from which version to which, by whom, when."""
    model = visible_model(session, user, name)
    return [AliasMoveRead.of(m) for m in registry.alias_history(session, model, alias)]


# Last in the document: a client or fuzzer that walks the operations in order deletes the model after the rest.
@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(403, 404, 422))
def delete_model(name: DeletedNamePath, session: SessionDep, user: CurrentUser) -> Response:
    """Delete the model with its versions, aliases and their history. The experiments stay as they are."""
    registry.delete_model(session, user, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
