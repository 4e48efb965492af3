"""Bodies of the model registry's routes: models, versions, aliases and their moves, and dataset default models.

The model card's body is beside its builder, api/serving/model_card.py (it includes the input contract).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import UtcDatetime
from domain.access import MAX_ID
from domain.registry import NAME_PATTERN
from models import AliasMove, ModelAlias, ModelVersion, RegisteredModel, Visibility
from training.bounds import Between

ModelName = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="Unique across the service: letters, digits, '.', '_' and '-', at most 100, starting with a "
        "letter or digit (no '@' or ':', which name an alias or a version in a reference).",
        examples=["digits"],
    ),
]


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ModelName
    visibility: Visibility = Field(
        default=Visibility.PRIVATE,
        description="private: you and admins only. public: every user can read it and predict with it; only you "
        "and admins can change it.",
    )
    description: Annotated[str, Field(max_length=2000)] | None = Field(default=None, description="What it is for.")


class VersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiment_id: Annotated[int, Between(1, MAX_ID)] = Field(
        description="Your succeeded experiment whose checkpoint becomes the new version.", examples=[1]
    )


class AliasSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Between(1, MAX_ID)] = Field(description="The version number it points at.", examples=[1])


class AliasMoveRead(BaseModel):
    alias: str
    from_version: int | None = Field(description="Where it pointed before; null when it was set the first time.")
    to_version: int | None = Field(description="Where it points since; null when it was deleted.")
    moved_by: int = Field(description="The id of the user who moved it.")
    moved_at: UtcDatetime

    @classmethod
    def of(cls, move: AliasMove) -> AliasMoveRead:
        return cls(
            alias=move.alias,
            from_version=move.from_version,
            to_version=move.to_version,
            moved_by=move.moved_by,
            moved_at=move.moved_at,
        )


class VersionRead(BaseModel):
    model: str
    number: int = Field(description="1, 2, 3... within the model; a version never changes.")
    experiment_id: int
    checkpoint_sha256: str = Field(description="The checkpoint it serves: refused if the stored bytes differ.")
    created_by: int = Field(description="The id of the user who registered it.")
    created_at: UtcDatetime
    aliases: list[str] = Field(description="The aliases pointing at it now.")

    @classmethod
    def of(cls, model: RegisteredModel, version: ModelVersion, aliases: list[ModelAlias]) -> VersionRead:
        return cls(
            model=model.name,
            number=version.number,
            experiment_id=version.experiment_id,
            checkpoint_sha256=version.checkpoint_sha256,
            created_by=version.created_by,
            created_at=version.created_at,
            aliases=[a.name for a in aliases if a.version == version.number],
        )


class ModelRead(BaseModel):
    name: str
    description: str | None
    owner: str = Field(description="The name of the user who owns it.")
    visibility: Visibility
    created_at: UtcDatetime
    aliases: dict[str, int] = Field(description="Each alias and the version number it points at.")
    latest_version: int | None = Field(description="The newest version's number; null before the first.")

    @classmethod
    def of(cls, model: RegisteredModel, aliases: list[ModelAlias], latest: int | None) -> ModelRead:
        return cls(
            name=model.name,
            description=model.description,
            owner=model.owner.name,
            visibility=model.visibility,
            created_at=model.created_at,
            aliases={a.name: a.version for a in aliases},
            latest_version=latest,
        )


class ModelDetail(ModelRead):
    versions: list[VersionRead] = Field(description="Every version, oldest first.")
    history: list[AliasMoveRead] = Field(description="Every move of every alias, oldest first.")


ModelRef = Annotated[
    str,
    Field(
        max_length=150,
        description="NAME (its production alias), NAME@ALIAS or NAME:VERSION; an alias follows its moves.",
        examples=["digits@production"],
    ),
]


class DefaultModelSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelRef
    for_everyone: bool = Field(
        default=False,
        description="Admins only: the class-wide default, for every user who has not set their own (a public model).",
    )


class DefaultModelRead(BaseModel):
    dataset: str
    mine: str | None = Field(description="Your own default model for the dataset, as a reference.")
    everyone: str | None = Field(description="The class-wide default an admin set, as a reference.")
    serving: str = Field(
        description="What your predictions on the dataset use now: yours, else the class-wide one, else your best "
        "succeeded experiment by validation accuracy."
    )
