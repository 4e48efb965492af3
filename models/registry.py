"""The model registry's tables: named models, their numbered versions, aliases and every move of an alias.

A version is an experiment's checkpoint, pinned by the sha256 it had when it was registered: it never changes,
and a checkpoint whose bytes no longer hash to it is refused when served. Rows of a model are changed only
under its lock (`lock_model`), so version numbers and alias moves are decided one at a time.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import DateTime, Enum, ForeignKey, Integer, String, Text, UniqueConstraint, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import Base, utcnow

if TYPE_CHECKING:
    from models.users import User

NAME_LENGTH = 100
ALIAS_LENGTH = 40


class Visibility(StrEnum):
    PRIVATE = "private"  # its owner and admins
    PUBLIC = "public"  # every user reads and predicts with it; only its owner and admins change it


class RegisteredModel(Base):
    __tablename__ = "registered_model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    visibility: Mapped[Visibility] = mapped_column(
        Enum(Visibility, values_callable=lambda m: [v.value for v in m], native_enum=False, length=10),
        default=Visibility.PRIVATE,
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Written by every change to the model's versions or aliases: the write that takes its lock (lock_model).
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    owner: Mapped[User] = relationship(lazy="joined")
    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model", order_by="ModelVersion.number", cascade="all, delete-orphan", passive_deletes=True
    )
    aliases: Mapped[list[ModelAlias]] = relationship(
        back_populates="model", order_by="ModelAlias.name", cascade="all, delete-orphan", passive_deletes=True
    )


class ModelVersion(Base):
    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_model.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, 3... within its model, never reused
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id"), index=True)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[int] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[RegisteredModel] = relationship(back_populates="versions")


class ModelAlias(Base):
    __tablename__ = "model_alias"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_model.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(ALIAS_LENGTH))
    version: Mapped[int] = mapped_column(Integer)  # a version number of the model
    moved_by: Mapped[int] = mapped_column(ForeignKey("user.id"))
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[RegisteredModel] = relationship(back_populates="aliases")


class AliasMove(Base):
    """One move of an alias, kept when the alias is deleted: from_version null when it was set the first time,
    to_version null when it was deleted."""

    __tablename__ = "alias_move"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_model.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(ALIAS_LENGTH))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    moved_by: Mapped[int] = mapped_column(ForeignKey("user.id"))
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DatasetDefault(Base):
    """Which model version `/datasets/{dataset}/predictions` uses: a user's own choice (`user_id`), or the class-wide
    one an admin set (`user_id` null). It names an alias or a version number, so a moved alias moves it too."""

    __tablename__ = "dataset_default"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(40), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_model.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str | None] = mapped_column(String(ALIAS_LENGTH))
    version: Mapped[int | None] = mapped_column(Integer)
    set_by: Mapped[int] = mapped_column(ForeignKey("user.id"))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[RegisteredModel] = relationship(lazy="joined")

    @property
    def ref(self) -> str:
        return f"{self.model.name}:{self.version}" if self.version is not None else f"{self.model.name}@{self.alias}"


def lock_model(session: Session, model_id: int) -> None:
    """Hold the model's lock until the transaction ends: a write to its row, the first write of the transaction.

    On PostgreSQL the row lock queues every other writer of this model; on SQLite the write takes the database's
    write lock (the reads before it ran outside any transaction). Whatever is read after it is current and stays
    so until commit: the next version number, where an alias points.
    """
    session.execute(update(RegisteredModel).where(RegisteredModel.id == model_id).values(changed_at=utcnow()))
