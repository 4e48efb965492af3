"""What the dataset routes answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas.fields import UtcDatetime
from models import DatasetStatus, Visibility
from training.spec import Network


class DatasetRead(BaseModel):
    """One version of a dataset the caller may see: a built-in (owned by nobody) or an uploaded one."""

    name: str
    version: int
    builtin: bool = Field(description="One of the service's own datasets (mnist, fashion_mnist, cats_vs_dogs).")
    owner_id: int | None = Field(description="The user who uploaded it; null for a built-in.")
    visibility: Visibility
    status: DatasetStatus = Field(
        description="processing, ready, failed or duplicate (GET /datasets/{name} says more)."
    )
    description: str
    class_names: list[str] = Field(description="Empty until an upload is prepared.")
    input_shape: list[int] = Field(description="Empty until an upload is prepared.")
    default_network: Network | None = Field(
        description="The network a submission gets by default; null for an upload, which cannot be trained on yet."
    )
    test_split: str
    in_data_dir: bool = Field(description="Whether the files are in the server's data folder (else downloaded).")
    best_experiment_id: int | None = Field(
        description="Your best succeeded experiment on it: what dataset predictions use unless a default model is set "
        "(GET /datasets/{dataset}/default-model)."
    )
    images: int | None = Field(description="An upload's images, train and test together, once prepared; null else.")
    content_sha256: str | None = Field(
        description="The sha256 of its content: an upload's once prepared, a built-in's once a worker first read its "
        "data (from its data folder or the download); null until then."
    )


class DatasetError(BaseModel):
    entry: str = Field(description="The archive member (or array) at fault, or '(the upload)' for the whole of it.")
    reason: str = Field(description="What is wrong with it and how to fix it.")


class DatasetVersionRead(BaseModel):
    """One version of a dataset, with what its preparation found."""

    name: str
    version: int
    builtin: bool
    owner_id: int | None
    visibility: Visibility
    status: DatasetStatus = Field(
        description="processing (being prepared), ready, failed (`errors` says why) or duplicate (the same content "
        "as ready version `duplicate_of`; nothing new was stored)."
    )
    errors: list[DatasetError]
    duplicate_of: int | None
    content_sha256: str | None = Field(
        description="The sha256 of the canonical content; null until prepared. A built-in's is recorded when a worker "
        "first reads its data, null until then: mnist's and fashion_mnist's is the hash an upload of their arrays "
        "gets, cats_vs_dogs' is of its image files."
    )
    blob_sha256: str | None = Field(description="The blob of its packed arrays; null unless ready (and for built-ins).")
    options: dict[str, object] = Field(description="The options the upload asked for (the rest were defaults).")
    class_names: list[str] | None
    counts: dict[str, dict[str, int]] | None = Field(description="Images per class of each split (train, test).")
    input_shape: list[int] | None
    fit: str | None
    color_mode: str | None
    held_out: bool | None = Field(description="Whether the test split was held out of the upload (else its own).")
    test_fraction: float | None
    seed: int | None
    size_bytes: int | None = Field(description="Bytes of the canonical arrays.")
    images: int | None
    upload_bytes: int | None
    source_format: str | None
    created_by: int | None
    created_at: datetime
    finished_at: datetime | None


class DatasetDetail(BaseModel):
    """A dataset and every version of it the caller may see, oldest first."""

    name: str
    builtin: bool
    owner_id: int | None
    versions: list[DatasetVersionRead]


class DatasetShareRead(BaseModel):
    """One user a private dataset is shared with: they see and use every version of it, and change nothing."""

    user_id: int
    shared_by: int | None
    created_at: UtcDatetime


class DatasetImageRead(BaseModel):
    """One stored image of a dataset version: where it is in its split, its class, and where its PNG is."""

    index: int = Field(description="Its position in the split (what the PNG's URL names).")
    split: str = Field(description="train or test.")
    class_name: str = Field(serialization_alias="class", description="Its class's name.")
    label: int = Field(description="Its class's index in `class_names`.")
    url: str = Field(description="The image as PNG, its pixels as stored.")


class DatasetImagePage(BaseModel):
    """A page of a version's images of one split (of one class, or all), in the split's order."""

    name: str
    version: int
    split: str
    class_name: str | None = Field(
        serialization_alias="class", description="The class paged through; null for every class."
    )
    items: list[DatasetImageRead]
    total: int = Field(description="How many images the split has (of the class, if one was named).")
    offset: int
    limit: int
    next_offset: int | None = Field(description="The offset of the next page; null on the last one.")
