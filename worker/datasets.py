"""Preparing an uploaded dataset version: the upload out of the blob store, through `training.uploads.ingest`, and
its canonical arrays packed back in.

The packed form is one uncompressed tar of the prepared folder (x_train.npy, y_train.npy, x_test.npy, y_test.npy,
manifest.json), written deterministically (sorted names, zero times and owners), so the same content packs to the
same blob and a training worker can later fetch it through its blob cache and memory-map the arrays it unpacks.

Idempotent: nothing is written to the row until the end, in one transaction that only changes a `processing` row,
but the claim of a lease (domain/preparations.py) held while it prepares. A task killed midway leaves the row
`processing` and its upload referenced; once its lease has lapsed, the redelivered task (the queue acks late) or
the reaper's publish of it starts again from the upload, and what the killed one had put is either the same blob
(content-addressed) or unreferenced garbage the store's sweep frees. Either way the row ends without
`upload_sha256`: nothing references the upload any more, and the sweep frees it.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select

from config import Settings, get_settings
from domain import preparations
from infra.blob_store import BlobStore, file_chunks
from models import DatasetStatus, DatasetVersion
from models.base import utcnow
from models.blob_store import DatabaseBlobStore
from models.datasets import lock_name
from models.db import session_scope
from training.image_limits import DecodeLimits
from training.uploads import PreparedDataset, UploadCaps, UploadOptions, UploadRefused, ingest
from training.uploads.errors import WHOLE_UPLOAD
from worker.dataset_events import ProgressPublisher, publish_settled
from worker.preparation_lease import PreparationLease

log = logging.getLogger(__name__)

PACKED_FILES = ("manifest.json", "x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy")


def upload_caps(settings: Settings) -> UploadCaps:
    """What reading one upload may cost: the image decoding limits are the predictions' own."""
    return UploadCaps(
        decode=DecodeLimits(max_pixels=settings.max_image_pixels, max_bytes=settings.max_image_decoded_bytes)
    )


def upload_options(options: dict[str, Any]) -> UploadOptions:
    size = options.get("image_size")
    return UploadOptions(
        image_size=None if size is None else (int(size[0]), int(size[1])),
        fit=options.get("fit"),
        color_mode=options.get("color_mode"),
        test_fraction=options.get("test_fraction"),
        seed=options.get("seed"),
    )


def prepare(dataset_id: int, store: BlobStore | None = None) -> str:
    """Prepare dataset version `dataset_id` if it is `processing`; how it ended: ready, duplicate, failed or
    skipped. Its progress and its settled status are published on its event stream."""
    outcome = _claimed_and_prepared(dataset_id, store)
    if outcome != "skipped":  # a skipped one was settled (and published) by an earlier delivery, or deleted
        publish_settled(dataset_id)
    return outcome


def _claimed_and_prepared(dataset_id: int, store: BlobStore | None) -> str:
    store = store or DatabaseBlobStore()
    with session_scope() as session:
        # Claimed first: a duplicate message (the reaper's, a redelivery) while another preparation is live, or one
        # for a version settled already, does nothing.
        attempt = preparations.claim(session, dataset_id, utcnow())
        row = None if attempt is None else session.get(DatasetVersion, dataset_id)
        if attempt is None or row is None or row.upload_sha256 is None:
            return "skipped"
        upload, options = row.upload_sha256, dict(row.options)
    with PreparationLease(dataset_id, attempt, get_settings().heartbeat_s):
        return _prepare_upload(dataset_id, upload, options, store)


def _prepare_upload(dataset_id: int, upload: str, options: dict[str, Any], store: BlobStore) -> str:
    try:
        with tempfile.TemporaryDirectory(prefix=f"epochal-dataset-{dataset_id}-") as workdir:
            source = Path(workdir) / "upload"
            _fetch(store, upload, source)
            caps, progress = upload_caps(get_settings()), ProgressPublisher(dataset_id)
            prepared = ingest(source, Path(workdir) / "prepared", upload_options(options), caps, progress)
            source.unlink()  # the disk it took is the arrays' now
            packed = pack(prepared.path, Path(workdir) / "packed.tar")
            with packed.open("rb") as stream:
                blob = store.put(file_chunks(stream))
    except UploadRefused as exc:
        return _finish_failed(dataset_id, [{"entry": exc.entry, "reason": exc.reason}])
    except Exception as exc:
        log.exception("dataset version %s could not be prepared", dataset_id)
        reason = f"it could not be prepared ({type(exc).__name__}: {exc}); upload it again"
        return _finish_failed(dataset_id, [{"entry": WHOLE_UPLOAD, "reason": reason}])
    return _finish_ready(dataset_id, prepared, blob)


def _fetch(store: BlobStore, sha256: str, dest: Path) -> None:
    """The blob as a file, checked against its name (the store is trusted no more than the cache trusts it)."""
    digest = hashlib.sha256()
    with dest.open("wb") as out:
        for chunk in store.read(sha256):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        raise RuntimeError(f"the stored upload does not hash to {sha256}")


def pack(folder: Path, dest: Path) -> Path:
    """The prepared folder as an uncompressed, deterministic tar at `dest`."""
    with tarfile.open(dest, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in PACKED_FILES:
            info = tar.gettarinfo(str(folder / name), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
            with (folder / name).open("rb") as stream:
                tar.addfile(info, stream)
    return dest


def _finish_failed(dataset_id: int, errors: list[dict[str, str]]) -> str:
    with session_scope() as session:
        row = session.get(DatasetVersion, dataset_id)
        if row is None or row.status != DatasetStatus.PROCESSING or row.deleted_at is not None:
            return "skipped"
        row.settle_failed(errors)
    return "failed"


def _finish_ready(dataset_id: int, prepared: PreparedDataset, blob: str) -> str:
    with session_scope() as session:
        row = session.get(DatasetVersion, dataset_id)
        if row is None:
            return "skipped"
        # Two versions of the same content finishing at once would each find no ready one and both end ready:
        # the name's rows are held until this commits, and the row read again under the lock.
        lock_name(session, row.name)
        session.refresh(row)
        if row.status != DatasetStatus.PROCESSING or row.deleted_at is not None:
            return "skipped"  # finished by an earlier delivery of the task, or deleted meanwhile
        same = session.execute(
            select(DatasetVersion.version, DatasetVersion.blob_sha256).where(
                DatasetVersion.name == row.name,
                DatasetVersion.owner_id == row.owner_id,
                DatasetVersion.status == DatasetStatus.READY,
                DatasetVersion.content_sha256 == prepared.sha256,
                DatasetVersion.id != row.id,
                DatasetVersion.deleted_at.is_(None),
            )
        ).first()
        row.content_sha256 = prepared.sha256
        row.class_names = list(prepared.class_names)
        row.counts = {split: dict(per_class) for split, per_class in prepared.counts.items()}
        row.input_shape = list(prepared.input_shape)
        row.fit, row.color_mode = str(prepared.fit), str(prepared.color_mode)
        row.held_out, row.test_fraction, row.seed = prepared.held_out, prepared.test_fraction, prepared.seed
        row.size_bytes, row.images, row.source_format = prepared.size_bytes, prepared.images, prepared.source_format
        # When the content is a ready version's already, this version stores nothing and points at that one.
        if same is None:
            row.settle_ready(blob, duplicate_of=None)
            return "ready"
        row.settle_ready(same.blob_sha256, duplicate_of=same.version)
        return "duplicate"
