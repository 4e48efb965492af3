"""Datasets: the built-ins and the ones users upload (rows of `dataset_version`), and which model a user's
predictions on a built-in use.

An upload (POST /datasets) is streamed into the blob store as it arrives (a multipart `file` part is spooled to a
temporary file by the form parser first: memory stays bounded either way), under the upload cap
(EPOCHAL_MAX_UPLOAD_BYTES, enforced by `BodySizeLimit` while it streams: over it, a 413 and the partial blob is
dropped). Then a `processing` row is committed and the worker's `prepare_dataset` queued (worker/datasets.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from api.http.auth import CurrentUser
from api.http.deps import SessionDep, SettingsDep
from api.http.errors import responses
from api.http.openapi import BINARY
from api.http.params import DatasetName, DatasetVersionNumber, id_path
from api.schemas.datasets import DatasetDetail, DatasetError, DatasetRead, DatasetShareRead, DatasetVersionRead
from api.schemas.registry import DefaultModelRead, DefaultModelSet
from config import Settings, get_settings
from domain import datasets as dataset_rows
from domain import registry
from domain.access import best_visible_experiment
from domain.errors import Unavailable
from domain.quotas import check_storage
from infra import events
from infra.blob_store import file_chunks
from infra.task_publisher import BrokerUnavailable, enqueue_dataset
from models import DatasetStatus, DatasetVersion, Visibility
from models.base import as_utc
from models.blob_store import DatabaseBlobStore
from models.datasets import status_event
from models.db import session_scope
from models.users import User
from training.bounds import INT32_MAX, Between
from training.datafiles import in_data_dir
from training.spec import DATASETS, Dataset, default_network_for
from training.uploads import ColorMode, Fit, UploadCaps

router = APIRouter(prefix="/datasets", tags=["datasets"])

# The routes whose body is streamed into storage: BodySizeLimit gives them the upload cap, not the body cap.
UPLOAD_ROUTES = frozenset({("POST", "/datasets")})
MAX_SIDE = UploadCaps().max_image_side
IMAGE_SIZE = re.compile(r"^(\d{1,5})(?:x(\d{1,5}))?$")

# The upload, two ways: a multipart part named `file` (`curl -F file=@flowers.zip`), or the archive as the whole body
# (`curl --data-binary @flowers.zip -H 'Content-Type: application/zip'`). Read by hand, so documented by hand.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {**BINARY, "description": "A zip or tar of class folders, or an .npz of arrays."}
                    },
                }
            },
            **{
                media_type: {"schema": {**BINARY, "description": "The archive itself, as the whole body."}}
                for media_type in (
                    "application/zip",
                    "application/x-tar",
                    "application/gzip",
                    "application/octet-stream",
                )
            },
        },
    }
}
_NO_FILE = (
    "send the dataset: a multipart/form-data part named 'file', or the archive as the whole body "
    "(Content-Type application/zip, application/x-tar, application/gzip or application/octet-stream)"
)


def _builtin_description(name: str) -> tuple[str, str, Any]:
    info = DATASETS[Dataset(name)]  # a built-in row's name is a Dataset value
    return info.description, info.test_split, info.default_network


def _shape(stored: list[int]) -> tuple[int, ...]:
    height, width, channels = stored
    return (height, width) if channels == 1 else (height, width, channels)


def _test_split(row: DatasetVersion) -> str:
    if row.status != DatasetStatus.READY or row.counts is None:
        return f"({row.status})"
    test = sum(row.counts.get("test", {}).values())
    if row.held_out:
        return f"held out of the upload: {test} images ({row.test_fraction:g}, seed {row.seed})"
    return f"the upload's own test split ({test} images)"


def _listed(session: Session, settings: Settings, user: User, row: DatasetVersion) -> DatasetRead:
    fields: dict[str, Any] = {
        "name": row.name,
        "version": row.version,
        "builtin": row.builtin,
        "owner_id": row.owner_id,
        "visibility": row.visibility,
        "status": row.status,
        "class_names": list(row.class_names or []),
        "input_shape": list(row.input_shape or []),
        "images": row.images,
        "content_sha256": row.content_sha256,
    }
    if row.builtin:
        description, test_split, network = _builtin_description(row.name)
        best = best_visible_experiment(session, user, Dataset(row.name))
        return DatasetRead(
            **fields,
            description=description,
            default_network=network,
            test_split=test_split,
            in_data_dir=in_data_dir(Dataset(row.name), settings.data_dir),
            best_experiment_id=best.id if best else None,
        )
    return DatasetRead(
        **fields,
        description=f"uploaded: {row.images or 0} images" if row.images else "uploaded",
        default_network=default_network_for(_shape(row.input_shape)) if row.input_shape else None,
        test_split=_test_split(row),
        in_data_dir=False,
        best_experiment_id=best.id if (best := best_visible_experiment(session, user, row.name)) else None,
    )


def version_read(row: DatasetVersion) -> DatasetVersionRead:
    return DatasetVersionRead(
        name=row.name,
        version=row.version,
        builtin=row.builtin,
        owner_id=row.owner_id,
        visibility=row.visibility,
        status=row.status,
        errors=[DatasetError(**error) for error in row.errors or []],
        duplicate_of=row.duplicate_of,
        content_sha256=row.content_sha256,
        blob_sha256=row.blob_sha256,
        options=dict(row.options or {}),
        class_names=row.class_names,
        counts=row.counts,
        input_shape=row.input_shape,
        fit=row.fit,
        color_mode=row.color_mode,
        held_out=row.held_out,
        test_fraction=row.test_fraction,
        seed=row.seed,
        size_bytes=row.size_bytes,
        images=row.images,
        upload_bytes=row.upload_bytes,
        source_format=row.source_format,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        finished_at=None if row.finished_at is None else as_utc(row.finished_at),
    )


@router.get("", response_model=list[DatasetRead])
def list_datasets(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> list[DatasetRead]:
    """Every dataset version you may use: the built-ins (classes, input shape, default network, whether its files
    are local, your best experiment), then the public ones and your own uploads, by name and version."""
    return [_listed(session, settings, user, row) for row in dataset_rows.all_visible(session, user)]


# The delete's example is an upload: a built-in cannot be deleted.
UploadedName = Annotated[
    str,
    Path(description="An uploaded dataset's name (GET /datasets lists them).", max_length=100, examples=["flowers"]),
]


@router.get("/{name}", response_model=DatasetDetail, responses=responses(404, 422))
def read_dataset(name: DatasetName, session: SessionDep, user: CurrentUser) -> DatasetDetail:
    """A dataset and each of its versions: status, classes, counts per split, shape, content hash, errors."""
    versions = dataset_rows.visible_versions(session, user, name)
    first = versions[0]
    return DatasetDetail(
        name=name, builtin=first.builtin, owner_id=first.owner_id, versions=[version_read(v) for v in versions]
    )


@router.get("/{name}/shares", response_model=list[DatasetShareRead], responses=responses(403, 404, 422))
def list_dataset_shares(name: UploadedName, session: SessionDep, user: CurrentUser) -> list[DatasetShareRead]:
    """Who your private dataset is shared with (an admin: anyone's). 403 for a built-in, or for another user's
    dataset you see without owning it; 404 for one you cannot see."""
    return [
        DatasetShareRead.model_validate(s, from_attributes=True) for s in dataset_rows.shares_of(session, user, name)
    ]


ShareUserId = Annotated[
    int, id_path("The user to share it with (GET /users lists them; ask an admin for the id).", example=2)
]


@router.put("/{name}/shares/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(403, 404, 422))
def share_dataset(name: UploadedName, user_id: ShareUserId, session: SessionDep, user: CurrentUser) -> Response:
    """Share every version of your dataset (one uploaded since too) with one user: they see it in their lists, train
    on it and predict with it, and change nothing. Idempotent. 404 for a user or dataset that does not exist (or that
    you cannot see), 403 for a built-in or another user's dataset, 422 for its owner."""
    dataset_rows.share(session, user, name, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{name}/shares/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(403, 404, 422))
def unshare_dataset(name: UploadedName, user_id: ShareUserId, session: SessionDep, user: CurrentUser) -> Response:
    """Stop sharing your dataset with one user: it is a 404 for them again, as the dataset of a spec too (their
    experiments on it stay theirs). 404 if it was not shared with them."""
    dataset_rows.unshare(session, user, name, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _image_size(text: str | None) -> list[int] | None:
    if text is None:
        return None
    match = IMAGE_SIZE.match(text)
    sides = None if match is None else [int(match[1]), int(match[2] or match[1])]
    if sides is None or not all(1 <= side <= MAX_SIDE for side in sides):
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "image_size"),
                    "msg": f"image_size is HEIGHTxWIDTH (e.g. 64x48) or one side for a square (64), each side "
                    f"1 to {MAX_SIDE}",
                    "input": text,
                }
            ]
        )
    return sides


def _pulled(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The request body's pieces, for a blocking `put` in a worker thread: each one awaited on the event loop as
    the put asks for it, so only one piece is held at a time. An error of the stream (the body cap's 413, a client
    that went away) is raised inside the put, which then drops what it wrote."""

    async def next_piece() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (piece := anyio.from_thread.run(next_piece)) is not None:
        if piece:
            yield piece


async def _store_upload(request: Request) -> str:
    """The upload put into the blob store; its sha256."""
    store = DatabaseBlobStore()
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        file = form.get("file")
        if not isinstance(file, StarletteUpload):
            raise RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": _NO_FILE, "input": None}])
        return await run_in_threadpool(store.put, file_chunks(file.file))
    # Anything else is the archive itself (curl --data-binary sends application/x-www-form-urlencoded unless told).
    if media_type == "application/json" or media_type.endswith("+json") or media_type.startswith("text/"):
        raise RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": _NO_FILE, "input": None}])
    return await run_in_threadpool(store.put, _pulled(request.stream()))


def _created(
    user_id: int, name: str, visibility: Visibility, options: dict[str, Any], upload: str, queue: str
) -> DatasetVersionRead:
    store = DatabaseBlobStore()
    with session_scope() as session:
        caller = session.get(User, user_id)
        assert caller is not None
        # Counted once its size is known: what is refused here is no dataset's, and the reaper's sweep frees it.
        check_storage(session, get_settings(), caller, store.size(upload))
        row = dataset_rows.new_version(session, caller, name, visibility, options, upload, store.size(upload))
        # Before its preparation is queued, so that the worker's events follow it on the version's stream.
        events.dataset_processing(row.id, status_event(row))
        try:
            enqueue_dataset(row.id, queue)
        except BrokerUnavailable as exc:
            # Nothing would prepare it: the version ends failed (its upload no longer referenced) and the caller
            # is told to send it again.
            row.settle_failed([{"entry": "(the upload)", "reason": f"{exc}; upload it again"}])
            session.commit()
            events.dataset_event(row.id, "status", status_event(row))
            raise Unavailable(str(exc)) from exc
        return version_read(row)


def _name_checked(session: Session, settings: Settings, user: User, name: str) -> int:
    """The caller's id once the name is theirs to upload under and their storage is not full (before a byte of the
    body is read); the session is closed then: the body can take minutes to arrive, and no database connection is
    held meanwhile."""
    dataset_rows.check_owner(session, user, name)
    check_storage(session, settings, user, 0)
    caller_id = user.id
    session.close()
    return caller_id


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DatasetVersionRead,
    responses=responses(400, 409, 413, 422, 429, 503),
    openapi_extra=UPLOAD_BODY,
)
async def upload_dataset(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    name: Annotated[
        str, Query(description=f"The dataset's name: {dataset_rows.NAME_RULE}.", max_length=100, examples=["flowers"])
    ],
    visibility: Annotated[Visibility, Query(description="private (you and admins) or public (every user).")] = (
        Visibility.PRIVATE
    ),
    image_size: Annotated[
        str | None,
        Query(description="HEIGHTxWIDTH (or one side for a square); default: the most common size, at most 256."),
    ] = None,
    fit: Annotated[Fit | None, Query(description="How an image meets the size; default resize.")] = None,
    color_mode: Annotated[
        ColorMode | None, Query(description="Default: grayscale when every image is, otherwise rgb.")
    ] = None,
    test_fraction: Annotated[
        float | None,
        Query(gt=0, lt=1, description="Share held out for testing when the upload has no test split (default 0.2)."),
    ] = None,
    seed: Annotated[
        Annotated[int, Between(0, INT32_MAX)] | None, Query(description="The hold-out's seed (default 42).")
    ] = None,
) -> DatasetVersionRead:
    """Upload a dataset: a zip or tar of class folders (optionally under train/ and test/), or an .npz of
    x_train/y_train (x_test/y_test). Answered 202 with the new version, `processing`; follow
    GET /datasets/{name}/versions/{version}/events (its progress, then its final status), or poll GET /datasets/{name},
    until it is `ready` (or `failed`, with each problem and the entry it is in). A new upload under your name is
    its next version. 409 if the name is a built-in's or another user's; 413 over EPOCHAL_MAX_UPLOAD_BYTES (nothing
    is kept); 429 past your storage quota (your max_storage_bytes, else EPOCHAL_MAX_STORAGE_BYTES; GET /me shows it
    and what you store); 503 if the broker does not take the job.
    """
    dataset_rows.check_name(name)
    sides = _image_size(image_size)
    caller_id = await run_in_threadpool(_name_checked, session, settings, user, name)
    asked: dict[str, Any] = {
        "image_size": sides,
        "fit": None if fit is None else str(fit),
        "color_mode": None if color_mode is None else str(color_mode),
        "test_fraction": test_fraction,
        "seed": seed,
    }
    options = {key: value for key, value in asked.items() if value is not None}
    upload = await _store_upload(request)
    return await run_in_threadpool(_created, caller_id, name, visibility, options, upload, settings.default_queue)


def _defaults(session: Session, user: User, dataset: str) -> DefaultModelRead:
    dataset_rows.check_visible(session, user, dataset)
    mine, everyone = registry.defaults_of(session, user, dataset)
    chosen = mine or everyone
    if chosen is not None:
        serving = f"{'your' if chosen is mine else 'the class-wide'} default model {chosen.ref}"
    else:
        serving = f"your best succeeded experiment on {dataset} by validation accuracy"
    return DefaultModelRead(
        dataset=dataset,
        mine=None if mine is None else mine.ref,
        everyone=None if everyone is None else everyone.ref,
        serving=serving,
    )


@router.get("/{dataset}/default-model", response_model=DefaultModelRead, responses=responses(404, 422))
def read_default_model(dataset: DatasetName, session: SessionDep, user: CurrentUser) -> DefaultModelRead:
    """Which model `/datasets/{dataset}/predictions` uses for you: your own default, else the class-wide one."""
    return _defaults(session, user, dataset)


@router.put(
    "/{dataset}/default-model", response_model=DefaultModelRead, responses=responses(400, 403, 404, 409, 413, 422)
)
def set_default_model(
    dataset: DatasetName, body: DefaultModelSet, session: SessionDep, user: CurrentUser
) -> DefaultModelRead:
    """Set the model your predictions on the dataset use (it changes nobody else's); with `for_everyone` (admins
    only, a public model) the class-wide default for everyone who has not set their own.

    409 if the model version was not trained on this dataset.
    """
    dataset_rows.check_visible(session, user, dataset)
    registry.set_default(session, user, dataset, body.model, for_everyone=body.for_everyone)
    return _defaults(session, user, dataset)


@router.delete("/{dataset}/default-model", status_code=status.HTTP_204_NO_CONTENT, responses=responses(403, 404, 422))
def delete_default_model(
    dataset: DatasetName,
    session: SessionDep,
    user: CurrentUser,
    for_everyone: Annotated[bool, Query(description="Admins only: remove the class-wide default.")] = False,
) -> Response:
    """Remove your default model for the dataset (or, with `for_everyone`, the class-wide one)."""
    dataset_rows.check_visible(session, user, dataset)
    registry.clear_default(session, user, dataset, for_everyone=for_everyone)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{name}/{version}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(403, 404, 409, 422))
def delete_dataset_version(
    name: UploadedName,
    version: DatasetVersionNumber,
    session: SessionDep,
    user: CurrentUser,
) -> Response:
    """Delete one version of your dataset (an admin: of anyone's). The built-ins cannot be deleted (403), nor another
    user's public dataset (403); another user's private one is a 404; a version queued or running experiments train
    on is a 409. Its blobs are freed by the store's sweep."""
    dataset_rows.delete_version(session, user, name, version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
