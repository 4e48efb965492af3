"""Datasets as rows: one `dataset_version` per version of a named dataset, the built-ins included.

A name belongs to one owner (the first to upload under it; none for the built-ins, which are everyone's) and its
versions are numbered 1, 2, ... and never change once `ready`: a new upload under the name is a new version. A
version's content lives in the blob store (`models/blob_store.py`): while it is `processing`, `upload_sha256` is
the upload as it arrived; once `ready`, `blob_sha256` is its prepared arrays packed as one uncompressed tar
(`worker/datasets.py`) and `upload_sha256` is cleared, so the store's sweep frees the upload (`referenced_blobs`
is what a sweep must keep).

The built-ins (mnist, fashion_mnist, cats_vs_dogs) are rows too, public, owned by nobody, `ready` from the
migration on, with no blob: their files are still read from the data folder or the public download
(training/datafiles.py), and their content hash is null until a worker first reads them (`record_builtin_hash`; the
migration reads no data file). An experiment names its dataset and the version it trained on (`info_of` is what training
and serving read of a version).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow
from models.registry import Visibility
from training.spec import DatasetInfo, builtin_info, default_network_for

BUILTIN_VERSION = 1  # a built-in's one row

NAME_LENGTH = 64


class DatasetStatus(StrEnum):
    PROCESSING = "processing"  # uploaded; the worker's `prepare_dataset` has not finished with it
    READY = "ready"  # prepared: its arrays are in the blob store under `blob_sha256`
    FAILED = "failed"  # refused or broken; `errors` says what and where
    DUPLICATE = "duplicate"  # the same content as the ready version `duplicate_of` of the name: nothing new stored


def _enum(kind: type[StrEnum], length: int) -> Enum:
    return Enum(kind, values_callable=lambda m: [v.value for v in m], native_enum=False, length=length)


class DatasetVersion(Base):
    __tablename__ = "dataset_version"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within its name, never reused
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)  # None: a built-in
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility, 10), default=Visibility.PRIVATE)
    status: Mapped[DatasetStatus] = mapped_column(_enum(DatasetStatus, 12), default=DatasetStatus.PROCESSING)
    # What was wrong, when failed: [{"entry": the archive member (or "(the upload)"), "reason": what to do}].
    errors: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    duplicate_of: Mapped[int | None] = mapped_column(Integer)  # the version number whose content this is
    # The sha256 of the canonical content (training/uploads/canonical.py), the same whatever archive carried it.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    blob_sha256: Mapped[str | None] = mapped_column(String(64))  # the packed arrays, in the blob store
    upload_sha256: Mapped[str | None] = mapped_column(String(64))  # the upload, while it is being prepared
    upload_bytes: Mapped[int | None] = mapped_column(BigInteger)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what the uploader asked for
    class_names: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    counts: Mapped[dict[str, dict[str, int]] | None] = mapped_column(JSON(none_as_null=True))  # split -> class -> n
    input_shape: Mapped[list[int] | None] = mapped_column(JSON(none_as_null=True))
    fit: Mapped[str | None] = mapped_column(String(10))
    color_mode: Mapped[str | None] = mapped_column(String(10))
    held_out: Mapped[bool | None] = mapped_column(Boolean)  # whether the test split was held out of the upload
    test_fraction: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)  # of the canonical arrays
    images: Mapped[int | None] = mapped_column(Integer)
    source_format: Mapped[str | None] = mapped_column(String(20))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Its preparation as a lease (domain/preparations.py): how many were started, until when the one under way is
    # presumed alive (renewed by the process preparing it), and when the reaper last published it again.
    prepare_attempts: Mapped[int] = mapped_column(Integer, default=0)
    prepare_lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    prepare_published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A deleted version stays as this tombstone, hidden from every read and holding no blob, so that its number is
    # never given to other content.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def builtin(self) -> bool:
        return self.owner_id is None

    # A version's status changes only here, and only from `processing`: once settled, a version never changes.
    def settle_failed(self, errors: list[dict[str, str]]) -> None:
        """Refused or broken: `errors` says what and where. Its upload is no longer referenced (the sweep frees it)."""
        assert self.status == DatasetStatus.PROCESSING
        self.status, self.errors, self.upload_sha256, self.finished_at = DatasetStatus.FAILED, errors, None, utcnow()
        self.prepare_lease_expires_at = None

    def settle_ready(self, blob_sha256: str | None, duplicate_of: int | None) -> None:
        """Prepared (its figures set already): ready with its packed arrays, or a duplicate of an earlier version
        (whose packed arrays `blob_sha256` then is: the same content, stored once)."""
        assert self.status == DatasetStatus.PROCESSING
        self.upload_sha256, self.finished_at, self.prepare_lease_expires_at = None, utcnow(), None
        if duplicate_of is not None:
            self.status, self.duplicate_of = DatasetStatus.DUPLICATE, duplicate_of
        else:
            self.status = DatasetStatus.READY
        self.blob_sha256 = blob_sha256


class DatasetShare(Base):
    """A private dataset shared with one named user: they may see and use every version of the name (train on it,
    predict with it), not change it. Shares belong to the name, as the name belongs to one owner."""

    __tablename__ = "dataset_share"
    __table_args__ = (UniqueConstraint("name", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    shared_by: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def status_event(row: DatasetVersion) -> dict[str, Any]:
    """A version's status as its `status` event carries it (infra/events.py): what the worker publishes once it
    settled the row and what a stream that finds the row settled closes with are the same words."""
    event: dict[str, Any] = {"name": row.name, "version": row.version, "status": str(row.status)}
    if row.status == DatasetStatus.FAILED:
        event["errors"] = [dict(error) for error in row.errors or []]
    if row.status == DatasetStatus.DUPLICATE:
        event["duplicate_of"] = row.duplicate_of
    if row.status in (DatasetStatus.READY, DatasetStatus.DUPLICATE):
        event["images"] = row.images
    if row.deleted_at is not None:
        event["deleted"] = True
    return event


def referenced_blobs(session: Session) -> set[str]:
    """Every blob a dataset row needs: what a sweep of the blob store must keep (uploads still being prepared too)."""
    packed = session.scalars(select(DatasetVersion.blob_sha256).where(DatasetVersion.blob_sha256.is_not(None)))
    uploads = session.scalars(select(DatasetVersion.upload_sha256).where(DatasetVersion.upload_sha256.is_not(None)))
    return {sha for sha in (*packed, *uploads) if sha is not None}


TRAINABLE = (DatasetStatus.READY, DatasetStatus.DUPLICATE)  # a duplicate's figures and packed arrays are its twin's


def info_of(row: DatasetVersion) -> DatasetInfo:
    """What training and serving need to know about a prepared uploaded version (a built-in's is DATASETS', with its
    row's content hash: `builtin_recorded_info`). A
    deleted version has no packed arrays any more: it is described, not trained on."""
    assert row.status in TRAINABLE and row.class_names and row.input_shape and row.counts
    height, width, channels = row.input_shape
    shape = (height, width) if channels == 1 else (height, width, channels)
    test = sum(row.counts.get("test", {}).values())
    split = f"test ({test:,} images{', held out of the upload' if row.held_out else ''})"
    return DatasetInfo(
        name=row.name,
        class_names=tuple(row.class_names),
        input_shape=shape,
        default_network=default_network_for(shape),
        test_split=split,
        description=f"{row.name}@{row.version}: {row.images:,} images of {len(row.class_names)} classes, "
        f"{height}x{width} {row.color_mode} ({row.fit} to fit), uploaded as {row.source_format}.",
        train_examples=sum(row.counts.get("train", {}).values()),
        version=row.version,
        packed_sha256=row.blob_sha256,
        fit=row.fit or "resize",
        content_sha256=row.content_sha256,
    )


def _builtin_row(name: str) -> tuple[Any, ...]:
    return (DatasetVersion.name == name, DatasetVersion.owner_id.is_(None), DatasetVersion.version == BUILTIN_VERSION)


def record_builtin_hash(session: Session, name: str, sha256: str) -> str | None:
    """Record `sha256` as built-in `name`'s content hash unless one is recorded already, and return the one the row
    holds now (another than `sha256` when another host's data was read first). One conditional UPDATE: of workers
    reading the data at once, the first to commit wins and the others find its hash."""
    session.execute(
        update(DatasetVersion)
        .where(*_builtin_row(name), DatasetVersion.content_sha256.is_(None))
        .values(content_sha256=sha256)
    )
    return session.scalar(select(DatasetVersion.content_sha256).where(*_builtin_row(name)))


def builtin_recorded_info(session: Session, name: str) -> DatasetInfo | None:
    """Built-in `name`'s DatasetInfo with the content hash its row records (null until a worker read its data)."""
    builtin = builtin_info(name)
    if builtin is None:
        return None
    sha256 = session.scalar(select(DatasetVersion.content_sha256).where(*_builtin_row(name)))
    return dataclasses.replace(builtin, content_sha256=sha256)


def recorded_info(session: Session, name: str, version: int | None, *, to_train: bool = True) -> DatasetInfo:
    """The dataset version an experiment records (a built-in, or an uploaded version, whoever may see it now: who
    may use it was checked when the experiment was submitted). LookupError when it is not prepared, or, `to_train`,
    deleted (a deleted version still describes what was trained on it: its classes, its input)."""
    builtin = builtin_recorded_info(session, name)
    if builtin is not None:
        return builtin
    row = session.scalar(select(DatasetVersion).where(DatasetVersion.name == name, DatasetVersion.version == version))
    if row is None or row.status not in TRAINABLE or (to_train and row.deleted_at is not None):
        raise LookupError(f"dataset {name}@{version} was deleted, or is not prepared; train on another version")
    return info_of(row)


def lock_name(session: Session, name: str) -> None:
    """Hold every version of `name` until the session commits: what settles a version as ready or a duplicate of
    another reads the name's ready versions after this, so two finishes of the same content take turns.

    PostgreSQL locks the name's rows (in id order: two lockers never deadlock). SQLite has no row locks but one
    writer: a no-op write takes its write lock now, before the read that follows, which then sees every commit
    made before it (a read first would run on its own and could miss the other finish's commit).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(DatasetVersion).where(DatasetVersion.name == name).values(name=DatasetVersion.name))
        return
    session.execute(
        select(DatasetVersion.id).where(DatasetVersion.name == name).order_by(DatasetVersion.id).with_for_update()
    )
