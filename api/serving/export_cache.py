"""Exports of a checkpoint (training/exports.py), made on the first download and kept as artifacts of their experiment.

An export is a function of the checkpoint, and a succeeded experiment's checkpoint never changes (a retry, the one
way to train it again, deletes every artifact first), so the first export of a format is kept and served from then
on with the sha256 recorded when it was stored. It is made once however many requests miss together in this process
(single flight per experiment and format); two API processes that miss together both export, and the first to
store wins (the other's copy is dropped, and its caller gets the stored one). The checkpoint is only ever exported
from bytes that match its recorded sha256 (api/serving/integrity.py), and a stored export is checked the same way.

Serving through onnxruntime (api/serving/runtimes.py) takes its ONNX export from here too (`for_checkpoint`): the
stored export of the same checkpoint bytes wherever it is, else one made and stored as a download's would be (and
counted in the owner's storage the same way), so a checkpoint is exported once, whichever asks first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from api.http.errors import conflict, not_found
from api.serving.integrity import verified
from models import Artifact
from models.db import get_sessionmaker
from training.exports import FILES, Export, ExportFailed, ExportFormat, export_checkpoint
from training.results import CHECKPOINT_NAME


@dataclass(frozen=True)
class ExportedFile:
    """A file ready to send: the checkpoint itself or a stored export, its bytes already checked."""

    name: str
    media_type: str
    content: bytes
    sha256: str


def stored_file(session: Session, experiment_id: int, fmt: ExportFormat) -> ExportedFile | None:
    """The stored file of `fmt` for the experiment (its checkpoint for h5), checked against its sha256; None if
    there is none yet."""
    artifact = session.scalars(
        select(Artifact).where(Artifact.experiment_id == experiment_id, Artifact.name == FILES[fmt].name)
    ).first()
    if artifact is None:
        return None
    content = verified(artifact.content, artifact.sha256, experiment_id, artifact.name)  # 409 on a mismatch
    return ExportedFile(artifact.name, artifact.media_type, content, artifact.sha256)


def stored_export_of(session: Session, sha256: str, fmt: ExportFormat, experiment_id: int) -> ExportedFile | None:
    """A stored export in `fmt` of the checkpoint whose bytes have `sha256`, checked against its own sha256: this
    experiment's if it has one, else any other experiment's with the same checkpoint; None if there is none yet."""
    checkpoint = aliased(Artifact)
    artifact = session.scalars(
        select(Artifact)
        .join(checkpoint, checkpoint.experiment_id == Artifact.experiment_id)
        .where(checkpoint.name == CHECKPOINT_NAME, checkpoint.sha256 == sha256, Artifact.name == FILES[fmt].name)
        .order_by((Artifact.experiment_id != experiment_id), Artifact.id)
        .limit(1)
    ).first()
    if artifact is None:
        return None
    content = verified(artifact.content, artifact.sha256, artifact.experiment_id, artifact.name)
    return ExportedFile(artifact.name, artifact.media_type, content, artifact.sha256)


def no_checkpoint(experiment_id: int) -> Exception:
    return not_found(
        f"experiment {experiment_id} has no artifact {CHECKPOINT_NAME!r}; "
        f"GET /experiments/{experiment_id}/artifacts lists what it has"
    )


class ExportCache:
    """Makes each (experiment, format) export once per process, and stores it as an artifact for every process."""

    def __init__(self) -> None:
        self.made = 0  # exports made by this process: a download served from the stored copy adds nothing
        self._lock = threading.Lock()
        self._making: dict[tuple[int, ExportFormat], threading.Lock] = {}

    def get(self, experiment_id: int, fmt: ExportFormat) -> ExportedFile:
        """The experiment's file in `fmt`, exported now if it was not stored yet.

        Blocking (an ONNX export takes seconds): call it from a worker thread. Each database read and write is a
        short session of its own: none is held while the network is exported.
        """
        with self._gate(experiment_id, fmt):
            with get_sessionmaker()() as session:
                found = stored_file(session, experiment_id, fmt)
                if found is not None:
                    return found
                checkpoint = stored_file(session, experiment_id, ExportFormat.H5)
            if checkpoint is None:
                raise no_checkpoint(experiment_id)
            try:
                return self._export(experiment_id, checkpoint.content, fmt)
            except ExportFailed as exc:
                raise conflict(
                    f"{CHECKPOINT_NAME} of experiment {experiment_id} cannot be exported as {fmt}: {exc}; "
                    f"the checkpoint itself is at GET /experiments/{experiment_id}/exports/h5"
                ) from exc

    def for_checkpoint(self, experiment_id: int, checkpoint: bytes, sha256: str, fmt: ExportFormat) -> ExportedFile:
        """The export in `fmt` of `checkpoint` (bytes already checked against `sha256`), the experiment's own.

        What serving a network in another runtime needs (api/serving/runtimes.py): a stored export of these same
        checkpoint bytes is used wherever it is, this experiment's or another's with the same checkpoint sha256
        (a model registered twice, an experiment trained to the same bytes), so one checkpoint is exported once;
        otherwise it is exported now and stored as this experiment's. Raises `ExportFailed`. Blocking.
        """
        with self._gate(experiment_id, fmt):
            with get_sessionmaker()() as session:
                found = stored_export_of(session, sha256, fmt, experiment_id)
            if found is not None:
                return found
            return self._export(experiment_id, checkpoint, fmt)

    @contextmanager
    def _gate(self, experiment_id: int, fmt: ExportFormat) -> Iterator[None]:
        # Requests that miss together queue on one gate: the first exports, the others then find it stored.
        key = (experiment_id, fmt)
        with self._lock:
            gate = self._making.setdefault(key, threading.Lock())
        with gate:
            try:
                yield
            finally:
                with self._lock:
                    self._making.pop(key, None)

    def _export(self, experiment_id: int, checkpoint: bytes, fmt: ExportFormat) -> ExportedFile:
        export = export_checkpoint(checkpoint, fmt)
        with self._lock:
            self.made += 1
        return self._store(experiment_id, export)

    def _store(self, experiment_id: int, export: Export) -> ExportedFile:
        with get_sessionmaker()() as session:
            session.add(
                Artifact(
                    experiment_id=experiment_id,
                    name=export.name,
                    media_type=export.media_type,
                    size=len(export.content),
                    sha256=export.sha256,
                    content=export.content,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                # Another process stored its export first (the unique name per experiment): serve that one, so
                # every download of this format has the same bytes and sha256.
                session.rollback()
                winner = stored_file(session, experiment_id, export.format)
                if winner is not None:
                    return winner
        return ExportedFile(export.name, export.media_type, export.content, export.sha256)


_cache: ExportCache | None = None
_cache_lock = threading.Lock()


def get_export_cache() -> ExportCache:
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ExportCache()
        return _cache
