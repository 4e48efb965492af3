"""Datasets the service can train on, and which model a user's predictions on one use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.orm import Session

from api.http.auth import CurrentUser
from api.http.deps import SessionDep, SettingsDep
from api.http.errors import responses
from api.schemas.datasets import DatasetRead
from api.schemas.registry import DefaultModelRead, DefaultModelSet
from domain import registry
from domain.access import best_visible_experiment
from models.users import User
from training.datafiles import in_data_dir
from training.spec import DATASETS, Dataset

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.get("", response_model=list[DatasetRead])
def list_datasets(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> list[DatasetRead]:
    """Each dataset: classes, input shape, default network, whether its files are local, your best experiment."""
    result = []
    for info in DATASETS.values():
        best = best_visible_experiment(session, user, info.name)
        result.append(
            DatasetRead(
                name=info.name,
                description=info.description,
                class_names=list(info.class_names),
                input_shape=list(info.input_shape),
                default_network=info.default_network,
                test_split=info.test_split,
                in_data_dir=in_data_dir(info.name, settings.data_dir),
                best_experiment_id=best.id if best else None,
            )
        )
    return result


def _defaults(session: Session, user: User, dataset: Dataset) -> DefaultModelRead:
    mine, everyone = registry.defaults_of(session, user, dataset)
    chosen = mine or everyone
    if chosen is not None:
        serving = f"{'your' if chosen is mine else 'the class-wide'} default model {chosen.ref}"
    else:
        serving = f"your best succeeded experiment on {dataset.value} by validation accuracy"
    return DefaultModelRead(
        dataset=dataset,
        mine=None if mine is None else mine.ref,
        everyone=None if everyone is None else everyone.ref,
        serving=serving,
    )


@router.get("/{dataset}/default-model", response_model=DefaultModelRead, responses=responses(422))
def read_default_model(dataset: Dataset, session: SessionDep, user: CurrentUser) -> DefaultModelRead:
    """Which model `/datasets/{dataset}/predictions` uses for you: your own default, else the class-wide one."""
    return _defaults(session, user, dataset)


@router.put(
    "/{dataset}/default-model", response_model=DefaultModelRead, responses=responses(400, 403, 404, 409, 413, 422)
)
def set_default_model(
    dataset: Dataset, body: DefaultModelSet, session: SessionDep, user: CurrentUser
) -> DefaultModelRead:
    """Set the model your predictions on the dataset use (it changes nobody else's); with `for_everyone` (admins
    only, a public model) the class-wide default for everyone who has not set their own.

    409 if the model version was not trained on this dataset.
    """
    registry.set_default(session, user, dataset, body.model, for_everyone=body.for_everyone)
    return _defaults(session, user, dataset)


@router.delete("/{dataset}/default-model", status_code=status.HTTP_204_NO_CONTENT, responses=responses(403, 404, 422))
def delete_default_model(
    dataset: Dataset,
    session: SessionDep,
    user: CurrentUser,
    for_everyone: Annotated[bool, Query(description="Admins only: remove the class-wide default.")] = False,
) -> Response:
    """Remove your default model for the dataset (or, with `for_everyone`, the class-wide one)."""
    registry.clear_default(session, user, dataset, for_everyone=for_everyone)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
