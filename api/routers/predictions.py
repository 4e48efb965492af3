"""Predictions: images in, a label and per-class probabilities out for each.

The routes are `async`: the blocking work, verifying the key included, goes to one worker thread per
request (api/serving.py) and the model call to the network's micro-batcher, where concurrent requests
share one call; a sync route would hold a pool thread for the whole request and leave nothing to gather
on. They take the key as `BearerKey` (checked for presence only) and no sync dependency: each would be
one more hop to a thread (see api/auth.py for how they still answer as every other route does).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, UploadFile
from fastapi.params import File
from pydantic import BaseModel, Field

from api.access import ExperimentId
from api.auth import BearerKey, KeyVerifiedRoute
from api.errors import responses
from api.schemas import PredictionRead
from api.serving import ReadImages, best_on, by_id, predict, read_image
from training.spec import Dataset

router = APIRouter(tags=["predictions"], route_class=KeyVerifiedRoute)

MAX_BATCH_IMAGES = 64
ImageUpload = Annotated[UploadFile, File(description="A PNG or JPEG image.")]
ImageUploads = Annotated[
    list[UploadFile],
    File(description=f"PNG or JPEG images, one per `files` part, at most {MAX_BATCH_IMAGES}; answered in order."),
]
PREDICTION_ERRORS = responses(400, 404, 409, 413, 415, 422, 429)


class PredictionBatchRead(BaseModel):
    predictions: list[PredictionRead] = Field(description="One prediction per uploaded image, in upload order.")


def _one(file: UploadFile) -> ReadImages:
    return lambda: [(None, read_image(file))]


def _batch(files: list[UploadFile]) -> ReadImages:
    def read() -> list[tuple[str | None, bytes]]:
        if len(files) > MAX_BATCH_IMAGES:
            raise HTTPException(
                status_code=413,
                detail=f"a batch may hold at most {MAX_BATCH_IMAGES} images; this one has {len(files)}; split it",
            )
        parts = [f"files[{i}] ({file.filename!r})" if file.filename else f"files[{i}]" for i, file in enumerate(files)]
        return [(part, read_image(file, part)) for part, file in zip(parts, files, strict=True)]

    return read


def _counted(files: list[UploadFile]) -> int:
    # What a batch counts against the rate before it is read: the 413 for a bigger one comes after the rate check.
    return min(len(files), MAX_BATCH_IMAGES)


@router.post("/experiments/{experiment_id}/predictions", response_model=PredictionRead, responses=PREDICTION_ERRORS)
async def predict_with_experiment(
    experiment_id: ExperimentId, file: ImageUpload, request: Request, key: BearerKey
) -> PredictionRead:
    """Classify one image with this experiment's best checkpoint."""
    return (await predict(request, key, by_id(experiment_id), 1, _one(file)))[0]


@router.post(
    "/experiments/{experiment_id}/predictions/batch", response_model=PredictionBatchRead, responses=PREDICTION_ERRORS
)
async def predict_batch_with_experiment(
    experiment_id: ExperimentId, files: ImageUploads, request: Request, key: BearerKey
) -> PredictionBatchRead:
    """Classify several images (`files` parts) with this experiment's best checkpoint, in one request.

    A batch of n images counts as n predictions against your rate limit. One unreadable image fails the
    whole batch, with an error naming its part.
    """
    predictions = await predict(request, key, by_id(experiment_id), _counted(files), _batch(files))
    return PredictionBatchRead(predictions=predictions)


@router.post("/datasets/{dataset}/predictions", response_model=PredictionRead, responses=PREDICTION_ERRORS)
async def predict_with_best(dataset: Dataset, file: ImageUpload, request: Request, key: BearerKey) -> PredictionRead:
    """Classify one image with your best succeeded experiment on `dataset` (by validation accuracy)."""
    return (await predict(request, key, best_on(dataset), 1, _one(file)))[0]


@router.post("/datasets/{dataset}/predictions/batch", response_model=PredictionBatchRead, responses=PREDICTION_ERRORS)
async def predict_batch_with_best(
    dataset: Dataset, files: ImageUploads, request: Request, key: BearerKey
) -> PredictionBatchRead:
    """Classify several images (`files` parts) with your best succeeded experiment on `dataset`.

    A batch of n images counts as n predictions against your rate limit. One unreadable image fails the
    whole batch, with an error naming its part.
    """
    predictions = await predict(request, key, best_on(dataset), _counted(files), _batch(files))
    return PredictionBatchRead(predictions=predictions)
