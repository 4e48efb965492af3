"""Predictions: images in, a label and per-class probabilities out for each.

The routes are `async`: the blocking work goes to worker threads (api/serving.py) and the model
call to the network's micro-batcher, where concurrent requests share one call; a sync route would
hold a pool thread for the whole request and leave nothing to gather on.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, UploadFile
from fastapi.params import File
from pydantic import BaseModel, Field

from api.access import ExperimentId
from api.auth import CurrentUser
from api.deps import SessionDep, SettingsDep
from api.errors import responses
from api.quotas import check_prediction_rate
from api.schemas import PredictionRead
from api.serving import best_on, by_id, predict, read_image
from training.spec import Dataset

router = APIRouter(tags=["predictions"])

MAX_BATCH_IMAGES = 64
ImageUpload = Annotated[UploadFile, File(description="A PNG or JPEG image.")]
ImageUploads = Annotated[
    list[UploadFile],
    File(description=f"PNG or JPEG images, one per `files` part, at most {MAX_BATCH_IMAGES}; answered in order."),
]
PREDICTION_ERRORS = responses(400, 404, 409, 413, 415, 422, 429)


class PredictionBatchRead(BaseModel):
    predictions: list[PredictionRead] = Field(description="One prediction per uploaded image, in upload order.")


async def _read_batch(files: list[UploadFile]) -> list[tuple[str | None, bytes]]:
    if len(files) > MAX_BATCH_IMAGES:
        raise HTTPException(
            status_code=413,
            detail=f"a batch may hold at most {MAX_BATCH_IMAGES} images; this one has {len(files)}; split it",
        )
    parts = [f"files[{i}] ({file.filename!r})" if file.filename else f"files[{i}]" for i, file in enumerate(files)]
    return [(part, await read_image(file, part)) for part, file in zip(parts, files, strict=True)]


@router.post("/experiments/{experiment_id}/predictions", response_model=PredictionRead, responses=PREDICTION_ERRORS)
async def predict_with_experiment(
    experiment_id: ExperimentId, file: ImageUpload, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> PredictionRead:
    """Classify one image with this experiment's best checkpoint."""
    check_prediction_rate(settings, user)
    data = await read_image(file)
    return (await predict(session, user, by_id(experiment_id), [(None, data)]))[0]


@router.post(
    "/experiments/{experiment_id}/predictions/batch", response_model=PredictionBatchRead, responses=PREDICTION_ERRORS
)
async def predict_batch_with_experiment(
    experiment_id: ExperimentId, files: ImageUploads, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> PredictionBatchRead:
    """Classify several images (`files` parts) with this experiment's best checkpoint, in one request.

    A batch of n images counts as n predictions against your rate limit. One unreadable image fails the
    whole batch, with an error naming its part.
    """
    check_prediction_rate(settings, user, images=min(len(files), MAX_BATCH_IMAGES))
    images = await _read_batch(files)
    return PredictionBatchRead(predictions=await predict(session, user, by_id(experiment_id), images))


@router.post("/datasets/{dataset}/predictions", response_model=PredictionRead, responses=PREDICTION_ERRORS)
async def predict_with_best(
    dataset: Dataset, file: ImageUpload, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> PredictionRead:
    """Classify one image with your best succeeded experiment on `dataset` (by validation accuracy)."""
    check_prediction_rate(settings, user)
    data = await read_image(file)
    return (await predict(session, user, best_on(dataset), [(None, data)]))[0]


@router.post("/datasets/{dataset}/predictions/batch", response_model=PredictionBatchRead, responses=PREDICTION_ERRORS)
async def predict_batch_with_best(
    dataset: Dataset, files: ImageUploads, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> PredictionBatchRead:
    """Classify several images (`files` parts) with your best succeeded experiment on `dataset`.

    A batch of n images counts as n predictions against your rate limit. One unreadable image fails the
    whole batch, with an error naming its part.
    """
    check_prediction_rate(settings, user, images=min(len(files), MAX_BATCH_IMAGES))
    images = await _read_batch(files)
    return PredictionBatchRead(predictions=await predict(session, user, best_on(dataset), images))
