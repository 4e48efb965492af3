"""Predictions: images in, a label and per-class probabilities out for each.

The routes are `async`: the blocking work, verifying the key included, goes to one worker thread per
request (api/serving/pipeline.py) and the model call to the network's micro-batcher, where concurrent requests
share one call; a sync route would hold a pool thread for the whole request and leave nothing to gather
on. They take the key as `BearerKey` (checked for presence only) and no sync dependency: each would be
one more hop to a thread (see api/http/auth.py for how they still answer as every other route does).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.params import File
from pydantic import WithJsonSchema
from starlette.datastructures import UploadFile as StarletteUpload

from api.http.auth import BearerKey, KeyVerifiedRoute
from api.http.errors import responses
from api.http.openapi import BINARY
from api.http.params import ExperimentId
from api.schemas.predictions import PredictionBatchRead, PredictionRead
from api.serving.pipeline import ReadImages, best_on, by_id, by_model, capped, predict, read_image
from training.spec import DATASET_NAME

DatasetPath = Annotated[
    str,
    Path(
        pattern=DATASET_NAME,
        description="A built-in dataset's name, or an uploaded one's you may use (GET /datasets lists them).",
        examples=["mnist"],
    ),
]

router = APIRouter(tags=["predictions"], route_class=KeyVerifiedRoute)

MAX_BATCH_IMAGES = 64
ModelRef = Annotated[
    str,
    Path(
        description="A registered model's version: `NAME` (the version its `production` alias points at), "
        "`NAME@ALIAS`, or `NAME:VERSION` (e.g. `digits`, `digits@staging`, `digits:3`).",
        examples=["digits"],
    ),
]
ImageUploads = Annotated[
    list[Annotated[UploadFile, WithJsonSchema(BINARY)]],  # a file part: FastAPI would say contentMediaType instead
    File(
        description=f"PNG or JPEG images, one per `files` part, at most {MAX_BATCH_IMAGES}; answered in order.",
        # Documented, not validated here: no part is a 422 and one too many a 413 (see _batch), as they always were.
        json_schema_extra={"minItems": 1, "maxItems": MAX_BATCH_IMAGES},
    ),
]
PREDICTION_ERRORS = responses(400, 404, 409, 413, 415, 422, 429)


# One image, two ways: a multipart part named `file` (a browser form, `curl -F file=@digit.png`), or the image as
# the whole body (`curl --data-binary @digit.png -H 'Content-Type: image/png'`, what most inference clients send),
# which skips multipart parsing. Read by hand, so documented by hand.
SINGLE_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {**BINARY, "description": "A PNG or JPEG image."}},
                }
            },
            "image/png": {"schema": {**BINARY, "description": "The image itself, as the whole body."}},
            "image/jpeg": {"schema": {**BINARY, "description": "The image itself, as the whole body."}},
            # What generated clients send bytes as; single_image takes it as the image too.
            "application/octet-stream": {
                "schema": {**BINARY, "description": "A PNG or JPEG image, as the whole body."}
            },
        },
    }
}
_NO_IMAGE = (
    "send one image: a multipart/form-data part named 'file', or the image as the whole body with "
    "Content-Type image/png or image/jpeg"
)


async def single_image(request: Request) -> ReadImages:
    """The request's one image, a multipart `file` part or the whole body; a 422 saying how to send it if neither.

    Any `image/...` or `application/octet-stream` body is taken as the image: the decoder says 415 if it is not a
    PNG or JPEG. A 422 here still comes after the key's 401 (KeyVerifiedRoute).
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type.startswith("image/") or media_type == "application/octet-stream":
        body = await request.body()  # the body cap (EPOCHAL_MAX_BODY_BYTES) applied while it streamed
        return lambda: [(None, capped(body))]
    if media_type == "multipart/form-data":
        file = (await request.form()).get("file")
        if isinstance(file, StarletteUpload):  # what a form holds: FastAPI's UploadFile is a subclass
            return _one(file)
    raise RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": _NO_IMAGE, "input": None}])


def _one(file: StarletteUpload) -> ReadImages:
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


@router.post(
    "/experiments/{experiment_id}/predictions",
    response_model=PredictionRead,
    responses=PREDICTION_ERRORS,
    openapi_extra=SINGLE_IMAGE_BODY,
)
async def predict_with_experiment(experiment_id: ExperimentId, request: Request, key: BearerKey) -> PredictionRead:
    """Classify one image with this experiment's best checkpoint.

    Send it as a multipart part named `file`, or as the whole body with `Content-Type: image/png` (or
    `image/jpeg`).
    """
    return (await predict(request, key, by_id(experiment_id), 1, await single_image(request)))[0]


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


@router.post(
    "/datasets/{dataset}/predictions",
    response_model=PredictionRead,
    responses=PREDICTION_ERRORS,
    openapi_extra=SINGLE_IMAGE_BODY,
)
async def predict_with_best(dataset: DatasetPath, request: Request, key: BearerKey) -> PredictionRead:
    """Classify one image with your best succeeded experiment on `dataset` (by validation accuracy).

    Send it as a multipart part named `file`, or as the whole body with `Content-Type: image/png` (or
    `image/jpeg`).
    """
    return (await predict(request, key, best_on(dataset), 1, await single_image(request)))[0]


@router.post("/datasets/{dataset}/predictions/batch", response_model=PredictionBatchRead, responses=PREDICTION_ERRORS)
async def predict_batch_with_best(
    dataset: DatasetPath, files: ImageUploads, request: Request, key: BearerKey
) -> PredictionBatchRead:
    """Classify several images (`files` parts) with your best succeeded experiment on `dataset`.

    A batch of n images counts as n predictions against your rate limit. One unreadable image fails the
    whole batch, with an error naming its part.
    """
    predictions = await predict(request, key, best_on(dataset), _counted(files), _batch(files))
    return PredictionBatchRead(predictions=predictions)


@router.post(
    "/models/{ref}/predictions",
    response_model=PredictionRead,
    responses=PREDICTION_ERRORS,
    openapi_extra=SINGLE_IMAGE_BODY,
)
async def predict_with_model(ref: ModelRef, request: Request, key: BearerKey) -> PredictionRead:
    """Classify one image with a registered model: by default the version its `production` alias points at.

    404 if the model has no such alias or version (or you cannot see it), 422 for a reference that is not one of
    the three forms. Send the image as for the other prediction routes.
    """
    return (await predict(request, key, by_model(ref), 1, await single_image(request)))[0]


@router.post("/models/{ref}/predictions/batch", response_model=PredictionBatchRead, responses=PREDICTION_ERRORS)
async def predict_batch_with_model(
    ref: ModelRef, files: ImageUploads, request: Request, key: BearerKey
) -> PredictionBatchRead:
    """Classify several images (`files` parts) with a registered model's version, in one request."""
    predictions = await predict(request, key, by_model(ref), _counted(files), _batch(files))
    return PredictionBatchRead(predictions=predictions)
