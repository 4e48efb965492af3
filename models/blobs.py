"""The tables of the database's blob store (`models/blob_store.py`): one row per blob, its content in chunk rows.

A row is created when a put starts, before its hash is known, with `sha256` null: its chunks are written in short
transactions of their own, and the transaction that writes the last one's hash makes the blob visible. A row
whose sha256 is null is therefore never read, only swept once idle (`touched_at`) past the grace: it is what a put
that failed or died left behind.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Blob(Base):
    __tablename__ = "blob"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Unique where set; null (any number of them) while the put is under way.
    sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Renewed by every chunk of an unfinished put and by every put of content already stored: the sweep's clock.
    touched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BlobChunk(Base):
    """The `seq`-th piece of a blob's content, numbered from 0; all but the last are the store's chunk size."""

    __tablename__ = "blob_chunk"

    blob_id: Mapped[int] = mapped_column(ForeignKey("blob.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
