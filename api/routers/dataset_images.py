"""A dataset's images, to look at: a grid of a few per class (`samples.png`), a split's images paged by class, and
one image as PNG. Read-only; who may see a dataset and which version a request means is
`domain/dataset_images.py` (another user's private dataset is a 404, a version not ready a 409).

An uploaded version's pixels are read where they are stored, memory-mapped from the process's blob cache; a
built-in's samples from the data folder (the first images of its train split, read no further). The answers of a
ready version never change, so they carry an ETag and are cached for good; a matching If-None-Match is a 304.
"""

from __future__ import annotations

import functools
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response

from api.http.auth import CurrentUser
from api.http.deps import SessionDep, SettingsDep
from api.http.errors import responses
from api.http.openapi import file_response
from api.reports.sample_grid import MAX_PER_CLASS, STYLE, grid_layout, image_png, sample_grid_png
from api.schemas.datasets import DatasetImagePage, DatasetImageRead
from domain import dataset_images
from domain.errors import NotFound
from models import DatasetVersion
from training.bounds import INT32_MAX, Between
from training.errors import DatasetUnavailable
from training.samples import builtin_samples, builtin_stamp
from training.spec import DATASETS, Dataset

router = APIRouter(prefix="/datasets", tags=["datasets"])

PNG = "image/png"
MAX_IMAGE_PAGE = 200
# A ready version never changes: its answers may be kept for good. A built-in's files may be replaced by the operator.
FOREVER = "private, max-age=31536000, immutable"
AN_HOUR = "private, max-age=3600"
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "The copy the If-None-Match names is current: nothing is sent again."}
}

DatasetName = Annotated[
    str, Path(description="A dataset's name (GET /datasets lists them).", max_length=100, examples=["flowers"])
]
Version = Annotated[
    Annotated[int, Between(1, INT32_MAX)] | None,
    Query(description="The version (GET /datasets/{name} lists them); default: the latest ready one.", examples=[1]),
]
Split = Literal["train", "test"]


def _not_modified(request: Request, etag: str) -> bool:
    asked = request.headers.get("if-none-match")
    if asked is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in asked.split(",")}
    return etag in tags or "*" in tags


def _png(request: Request, content: Any, etag: str, cache_control: str, **headers: str) -> Response:
    """The PNG `content()` draws, or a 304 when the client holds it already (then nothing is drawn)."""
    cached = {"ETag": etag, "Cache-Control": cache_control}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=cached)
    return Response(content=content(), media_type=PNG, headers={**cached, **headers})


@functools.lru_cache(maxsize=8)
def _builtin_grid(
    dataset: Dataset, data_dir: FilePath, stamp: int, per_class: int, class_names: tuple[str, ...]
) -> bytes:
    """A built-in's grid, kept while its files stay the same (`stamp`): drawing it decodes files from the data
    folder, and it is asked for far more often than they change."""
    height, width = DATASETS[dataset].input_shape[:2]
    layout = grid_layout(height, width, len(class_names), per_class)
    samples = builtin_samples(dataset, data_dir, layout.rows, layout.columns)
    return sample_grid_png(layout, class_names, samples)


def _builtin_samples(request: Request, row: DatasetVersion, data_dir: FilePath, per_class: int) -> Response:
    dataset = Dataset(row.name)
    try:
        stamp = builtin_stamp(dataset, data_dir)
        content = _builtin_grid(dataset, data_dir, stamp, per_class, tuple(row.class_names or ()))
    except DatasetUnavailable as exc:
        raise NotFound(
            f"{exc}. Its samples are not downloaded to be shown: once its files are there (training reads them "
            "from there first too), ask again."
        ) from exc
    etag = f'"{row.name}-v{row.version}-{stamp:x}-{per_class}-{STYLE}"'
    return _png(request, lambda: content, etag, AN_HOUR)


@router.get(
    "/{name}/samples.png",
    response_class=Response,
    responses={
        200: file_response("A grid of the first images of each class of the train split, one row per class.", PNG),
        **NOT_MODIFIED,
        **responses(404, 409, 422),
    },
)
def dataset_samples(
    name: DatasetName,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    version: Version = None,
    per_class: Annotated[
        int, Between(1, MAX_PER_CLASS), Query(description="Images per class (per row), at most 8.")
    ] = MAX_PER_CLASS,
) -> Response:
    """A PNG grid of the first `per_class` images of each class of the train split (in its canonical order), one
    row per class with the class's name on its left, pixels as stored (never scaled). Bounded at about 8 million
    pixels: past that, fewer images per row and the first classes only (`Epochal-Classes-Shown` says how many).
    The built-ins' come from the data folder (404 saying what to put there when their files are not). The ETag
    is the content's sha256 with the version; 409 if the version is not ready."""
    row = dataset_images.showable_version(session, user, name, version)
    session.close()  # nothing more is read from the database; fetching the blob may take a while
    if row.builtin:
        return _builtin_samples(request, row, settings.data_dir, per_class)
    names = list(row.class_names or [])
    height, width = (row.input_shape or [1, 1])[:2]
    largest = max((row.counts or {}).get("train", {}).values(), default=0)
    layout = grid_layout(height, width, len(names), min(per_class, max(largest, 1)))

    def draw() -> bytes:
        with dataset_images.packed_arrays(row) as packed:
            samples = dataset_images.train_samples(packed, layout.rows, layout.columns)
            return sample_grid_png(layout, names, samples)

    etag = f'"{row.content_sha256}-v{row.version}-{per_class}-{STYLE}"'
    return _png(request, draw, etag, FOREVER, **{"Epochal-Classes-Shown": f"{layout.rows} of {len(names)}"})


@router.get("/{name}/images", response_model=DatasetImagePage, responses=responses(404, 409, 422))
def list_dataset_images(
    name: DatasetName,
    session: SessionDep,
    user: CurrentUser,
    version: Version = None,
    split: Annotated[Split, Query(description="train or test.")] = "train",
    class_name: Annotated[
        str | None, Query(alias="class", max_length=200, description="Only this class's images (a class name).")
    ] = None,
    offset: Annotated[int, Between(0, INT32_MAX), Query(description="How many to skip.")] = 0,
    limit: Annotated[
        int, Between(1, MAX_IMAGE_PAGE), Query(description=f"How many to answer at most ({MAX_IMAGE_PAGE}).")
    ] = 50,
) -> DatasetImagePage:
    """A page of an uploaded version's images of one split, in the split's order, each with its class and the URL
    of its PNG; `class` keeps one class's (a 422 lists the classes when it names none). `next_offset` is the next
    page's offset, null on the last. 409 for a version not ready, and for a built-in (its images are not stored
    here: samples.png shows some)."""
    row = dataset_images.showable_version(session, user, name, version)
    session.close()
    dataset_images.check_stored(row)
    label = dataset_images.class_label(row, class_name)
    names = list(row.class_names or [])
    with dataset_images.packed_arrays(row) as packed:
        page = dataset_images.image_page(packed, split, label, offset, limit)
        _, labels = packed.split(split)
        found = [(int(i), int(labels[int(i)])) for i in page.positions]
    items = [
        DatasetImageRead(
            index=index,
            split=split,
            class_name=names[found_label],
            label=found_label,
            url=f"/datasets/{row.name}/images/{split}/{index}.png?version={row.version}",
        )
        for index, found_label in found
    ]
    end = offset + len(items)
    return DatasetImagePage(
        name=row.name,
        version=row.version,
        split=split,
        class_name=class_name,
        items=items,
        total=page.total,
        offset=offset,
        limit=limit,
        next_offset=end if end < page.total else None,
    )


@router.get(
    "/{name}/images/{split}/{index}.png",
    response_class=Response,
    responses={
        200: file_response("The image, its pixels as stored.", PNG),
        **NOT_MODIFIED,
        **responses(404, 409, 422),
    },
)
def read_dataset_image(
    name: DatasetName,
    split: Annotated[Split, Path(description="train or test.", examples=["train"])],
    index: Annotated[
        int,
        # As a path id (api/http/params.id_path): a position no image can have is an image that does not exist, a
        # 404 (stored_image says which positions there are), not a 422.
        Path(
            description="Its position in the split (GET /datasets/{name}/images).",
            examples=[0],
            json_schema_extra={"minimum": 0, "maximum": INT32_MAX},
        ),
    ],
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    version: Version = None,
) -> Response:
    """One image of an uploaded version as PNG, exactly as stored (its class in `Epochal-Class`, percent-encoded
    UTF-8). 404 past the split's end; 409 for a version not ready, and for a built-in."""
    row = dataset_images.showable_version(session, user, name, version)
    session.close()
    dataset_images.check_stored(row)
    etag = f'"{row.content_sha256}-v{row.version}-{split}-{index}"'
    if _not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": FOREVER})
    with dataset_images.packed_arrays(row) as packed:
        image, label = dataset_images.stored_image(packed, row, split, index)
    class_name = (row.class_names or [])[label]
    return _png(request, lambda: image_png(image), etag, FOREVER, **{"Epochal-Class": _header_text(class_name)})


def _header_text(text: str) -> str:
    """A class name as a header value carries it: percent-encoded UTF-8 (a header is Latin-1 at most)."""
    return quote(text, safe="")
