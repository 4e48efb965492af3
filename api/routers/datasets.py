"""Datasets the service can train on."""

from __future__ import annotations

from fastapi import APIRouter

from api.http.auth import CurrentUser
from api.http.deps import SessionDep, SettingsDep
from api.schemas.datasets import DatasetRead
from domain.access import best_visible_experiment
from training.datafiles import in_data_dir
from training.spec import DATASETS

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
