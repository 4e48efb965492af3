"""Users and their API keys: who may call the service, and their per-user quota overrides."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow


class User(Base):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Quota overrides; NULL means the service-wide setting (EPOCHAL_MAX_ACTIVE_JOBS and friends) applies.
    max_active_jobs: Mapped[int | None] = mapped_column(Integer)
    max_sweep_experiments: Mapped[int | None] = mapped_column(Integer)
    predictions_per_second: Mapped[int | None] = mapped_column(Integer)
    # How many of their jobs may run at once (EPOCHAL_MAX_RUNNING_JOBS when NULL); the rest wait their turn.
    max_running_jobs: Mapped[int | None] = mapped_column(Integer)
    # Set by an admin: added to each of their jobs' own priority (NULL counts as 0).
    priority: Mapped[int | None] = mapped_column(Integer)
    # What one network of theirs may cost (EPOCHAL_MAX_NETWORK_* when NULL); 64-bit: FLOPs run to billions.
    max_network_params: Mapped[int | None] = mapped_column(BigInteger)
    max_network_flops: Mapped[int | None] = mapped_column(BigInteger)
    max_network_activation_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # How many bytes they may store, checkpoints and datasets together (EPOCHAL_MAX_STORAGE_BYTES when NULL).
    max_storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    keys: Mapped[list[ApiKey]] = relationship(back_populates="user", order_by="ApiKey.id")


class ApiKey(Base):
    """A bearer token, stored only as its hash; the token itself is shown once, when it is created."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    # The token's first characters, indexed: a lookup reads one row instead of hashing against every key.
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="keys")
