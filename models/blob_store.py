"""The blob store that keeps content in the database (`infra/blob_store.py` says what every store promises).

Content goes into `blob_chunk` rows of at most `chunk_bytes` (1 MiB), under a `blob` row created when the put
starts. Every chunk is its own short transaction: SQLite has one writer at a time, and a put that held the write
lock while it waited on its source (a client's upload) would stall every epoch write of the service. The put ends
with one transaction that names the blob by its hash, and only that makes it visible; or, when a blob with that
hash exists already, renews that one and drops its own chunks (same content, stored once).

Same code on SQLite and PostgreSQL: chunks are LargeBinary (BLOB, bytea), read one row at a time by primary key, so
neither side ever holds more than a chunk of a blob.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.blob_store import CHUNK_BYTES, BlobError, BlobNotFound, BlobWriteLost, Swept, check_sha256, rechunk
from models.base import utcnow
from models.blobs import Blob, BlobChunk
from models.db import rows_changed, session_scope

log = logging.getLogger(__name__)

# A put whose hash another put finished first is retried this often (it then finds that blob and renews it).
FINISH_TRIES = 3


class DatabaseBlobStore:
    """Blobs in this service's database, for every process that reaches it (an implementation of `BlobStore`)."""

    def __init__(self, sessions: Callable[[], Session] | None = None, chunk_bytes: int = CHUNK_BYTES) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be at least 1")
        # None: the process's own sessionmaker, looked up at each use (a forked worker child builds its own).
        self._sessions = sessions
        self.chunk_bytes = chunk_bytes

    def _transaction(self) -> AbstractContextManager[Session]:
        return session_scope(self._sessions)

    def put(self, chunks: Iterable[bytes]) -> str:
        blob_id = self._start()
        try:
            return self._write(blob_id, chunks)
        except BaseException:
            self._discard(blob_id)
            raise

    def has(self, sha256: str) -> bool:
        check_sha256(sha256)
        with self._transaction() as session:
            return session.scalar(select(Blob.id).where(Blob.sha256 == sha256)) is not None

    def size(self, sha256: str) -> int:
        check_sha256(sha256)
        with self._transaction() as session:
            size = session.scalar(select(Blob.size).where(Blob.sha256 == sha256))
        if size is None:
            raise BlobNotFound(f"no blob {sha256}")
        return int(size)

    def read(self, sha256: str) -> Iterator[bytes]:
        check_sha256(sha256)
        with self._transaction() as session:
            row = session.execute(select(Blob.id, Blob.chunks).where(Blob.sha256 == sha256)).one_or_none()
        if row is None:
            raise BlobNotFound(f"no blob {sha256}")
        return self._chunks(sha256, row.id, row.chunks)

    def sweep(self, referenced: Collection[str], grace_s: float) -> Swept:
        keep = set(referenced)
        cutoff = utcnow() - timedelta(seconds=grace_s)
        with self._transaction() as session:
            idle = session.execute(select(Blob.id, Blob.sha256).where(Blob.touched_at < cutoff)).all()
        blobs: list[str] = []
        unfinished = freed = 0
        for blob_id, sha256 in idle:
            if sha256 is not None and sha256 in keep:
                continue
            # One blob per transaction, and the condition again: a put may have renewed it since it was listed.
            with self._transaction() as session:
                gone = session.execute(
                    delete(Blob).where(Blob.id == blob_id, Blob.touched_at < cutoff).returning(Blob.size)
                ).one_or_none()
                if gone is None:
                    continue
                # The foreign key cascades too; deleting them here keeps the store right where it is not enforced.
                session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))
            freed += gone.size
            if sha256 is None:
                unfinished += 1
            else:
                blobs.append(sha256)
        return Swept(blobs, unfinished, freed)

    def _start(self) -> int:
        with self._transaction() as session:
            blob = Blob(sha256=None, size=0, chunks=0)
            session.add(blob)
            session.flush()
            return blob.id

    def _write(self, blob_id: int, chunks: Iterable[bytes]) -> str:
        digest = hashlib.sha256()
        size = count = 0
        for chunk in rechunk(chunks, self.chunk_bytes):
            digest.update(chunk)
            with self._transaction() as session:
                self._renew_unfinished(session, blob_id, len(chunk))
                session.execute(insert(BlobChunk).values(blob_id=blob_id, seq=count, data=chunk))
            size += len(chunk)
            count += 1
        return self._finish(blob_id, digest.hexdigest(), size, count)

    def _renew_unfinished(self, session: Session, blob_id: int, added: int) -> None:
        """Renew the put's own row, counting what it adds; its first write, so on SQLite the write lock comes first."""
        renewed = rows_changed(
            session,
            update(Blob)
            .where(Blob.id == blob_id, Blob.sha256.is_(None))
            .values(touched_at=utcnow(), size=Blob.size + added, chunks=Blob.chunks + (1 if added else 0)),
        )
        if not renewed:
            raise BlobWriteLost("this put was idle past the sweep's grace and its partial content was freed")

    def _finish(self, blob_id: int, sha256: str, size: int, count: int) -> str:
        for _ in range(FINISH_TRIES):
            try:
                with self._transaction() as session:
                    self._renew_unfinished(session, blob_id, 0)
                    stored = session.execute(
                        select(func.count(), func.coalesce(func.sum(func.length(BlobChunk.data)), 0)).where(
                            BlobChunk.blob_id == blob_id
                        )
                    ).one()
                    if (stored[0], stored[1]) != (count, size):
                        raise BlobError(
                            f"a put wrote {count} chunks ({size} bytes) and finds {stored[0]} ({stored[1]})"
                        )
                    now = utcnow()
                    if rows_changed(session, update(Blob).where(Blob.sha256 == sha256).values(touched_at=now)):
                        session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))
                        session.execute(delete(Blob).where(Blob.id == blob_id))
                        return sha256
                    session.execute(
                        update(Blob)
                        .where(Blob.id == blob_id)
                        .values(sha256=sha256, size=size, chunks=count, completed_at=now, touched_at=now)
                    )
                    return sha256
            except IntegrityError:
                # PostgreSQL: another put of the same content committed between our look and our naming. Again:
                # it is found this time, and ours is dropped.
                continue
        raise BlobError(f"could not name blob {sha256} after {FINISH_TRIES} tries")

    def _discard(self, blob_id: int) -> None:
        """Drop what a failed put wrote; if that fails too, it stays as garbage for the sweep."""
        try:
            with self._transaction() as session:
                # Only while unnamed: a commit that failed on the way back may have named it after all.
                if rows_changed(session, delete(Blob).where(Blob.id == blob_id, Blob.sha256.is_(None))):
                    session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))
        except Exception:
            log.warning(
                "could not drop the chunks of a failed put (blob row %d); the sweep will", blob_id, exc_info=True
            )

    def _chunks(self, sha256: str, blob_id: int, count: int) -> Iterator[bytes]:
        with self._transaction() as session:
            engine = session.get_bind().engine
        # One connection for the whole read (no checkout and liveness ping per chunk), but a transaction per chunk:
        # nothing is held while the consumer works on one (on SQLite an open read would keep the WAL from being
        # checkpointed for as long as the blob takes to read).
        with engine.connect() as connection:
            for seq in range(count):
                data = connection.execute(
                    select(BlobChunk.data).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq)
                ).scalar()
                connection.commit()
                if data is None:
                    raise BlobNotFound(f"blob {sha256} was swept while being read")
                yield bytes(data)
