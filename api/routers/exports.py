"""Exports: a succeeded experiment's checkpoint as a file other tools load (Keras, TF Serving, onnxruntime).

The route is `async` and verifies the key in the same worker-thread hop as its lookups (`as_caller`, api/http/auth.py),
with sessions of its own rather than `SessionDep`: an export that is not stored yet is made in a second hop, and
no database connection is held while it runs (seconds, for ONNX).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.http.auth import BearerKey, KeyVerifiedRoute, as_caller
from api.http.errors import conflict, responses
from api.http.openapi import file_response
from api.http.params import ExperimentId
from api.serving.export_cache import ExportedFile, get_export_cache, no_checkpoint, stored_file
from domain.access import visible_experiment
from domain.lifecycle import Status
from models.users import User
from training.exports import FILES, ExportFormat

router = APIRouter(tags=["experiments"], route_class=KeyVerifiedRoute)

FormatPath = Annotated[
    ExportFormat,
    Path(
        description=(
            "h5: the checkpoint itself (Keras' legacy HDF5). keras: Keras' native `.keras` file "
            "(keras.saving.load_model). savedmodel: a zipped TensorFlow SavedModel whose version folder `1/` TF "
            "Serving serves as it is (tf.saved_model.load, signature `serving_default`). onnx: an ONNX graph for "
            "onnxruntime. Every format takes what the checkpoint takes: float32 raw 0..255 pixels, [N, H, W] for "
            "a grayscale dataset, [N, H, W, 3] for RGB, named `images` in the SavedModel and the ONNX graph; the "
            "scaling by 1/255 is inside the network."
        )
    ),
]


def _find(session: Session, user: User, experiment_id: int, fmt: ExportFormat) -> ExportedFile | None:
    experiment = visible_experiment(session, user, experiment_id)
    if experiment.status is not Status.SUCCEEDED:
        raise conflict(
            f"experiment {experiment_id} is {experiment.status}; exports are made from the checkpoint a succeeded "
            "experiment stores"
        )
    found = stored_file(session, experiment_id, fmt)
    if found is None and fmt is ExportFormat.H5:
        raise no_checkpoint(experiment_id)
    return found


@router.get(
    "/experiments/{experiment_id}/exports/{format}",
    response_class=Response,
    responses={
        200: file_response(
            "The file: HDF5 for h5, a zip archive for keras and savedmodel, ONNX bytes for onnx.",
            *sorted({file.media_type for file in FILES.values()}),
        ),
        **responses(404, 409, 422),
    },
)
async def download_export(
    experiment_id: ExperimentId,
    format: FormatPath,  # the path's own word, which the document shows
    request: Request,
    key: BearerKey,
) -> Response:
    """Download the experiment's checkpoint in `format`, exported on the first request and stored from then on.

    The `ETag` is the file's sha256, the same on every download. 409 if the experiment has not succeeded, if the
    stored bytes no longer match their sha256, or if the network cannot be exported in that format.
    """
    found = await as_caller(request, key, lambda session, user: _find(session, user, experiment_id, format))
    if found is None:
        found = await run_in_threadpool(get_export_cache().get, experiment_id, format)
    return Response(
        content=found.content,
        media_type=found.media_type,
        headers={"Content-Disposition": f'attachment; filename="{found.name}"', "ETag": f'"{found.sha256}"'},
    )
