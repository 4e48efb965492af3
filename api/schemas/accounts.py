"""Request and response bodies for users and API keys."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.fields import UtcDatetime
from models.users import ApiKey, User
from training.bounds import Between

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"


Quota = Annotated[int, Between(1, 1_000_000)]  # far above any sensible limit, far below what the column holds
# A network's figures run to billions (FLOPs, bytes); 2**53 is exact in every JSON client, and fits BIGINT.
NetworkLimit = Annotated[int, Between(1, 2**53)]
# Bytes stored: from the setting's own floor (EPOCHAL_MAX_STORAGE_BYTES is at least 1024) to what JSON holds exactly.
StorageLimit = Annotated[int, Between(1024, 2**53)]


class QuotaOverrides(BaseModel):
    """Per-user limits; null means the service-wide setting applies."""

    model_config = ConfigDict(extra="forbid")

    max_active_jobs: Quota | None = Field(default=None, description="EPOCHAL_MAX_ACTIVE_JOBS")
    max_sweep_experiments: Quota | None = Field(default=None, description="EPOCHAL_MAX_SWEEP_EXPERIMENTS")
    predictions_per_second: Quota | None = Field(default=None, description="EPOCHAL_PREDICTIONS_PER_SECOND")
    max_running_jobs: Quota | None = Field(
        default=None, description="EPOCHAL_MAX_RUNNING_JOBS: how many of their jobs may run at once"
    )
    priority: Annotated[int, Between(-1000, 1000)] | None = Field(
        default=None,
        description="Added to each of their jobs' priority; higher is dispatched first, before fair share (null: 0)",
    )
    max_network_params: NetworkLimit | None = Field(
        default=None, description="EPOCHAL_MAX_NETWORK_PARAMS: most parameters in one of their networks"
    )
    max_network_flops: NetworkLimit | None = Field(
        default=None, description="EPOCHAL_MAX_NETWORK_FLOPS: most FLOPs per example in one of their networks"
    )
    max_network_activation_bytes: NetworkLimit | None = Field(
        default=None,
        description="EPOCHAL_MAX_NETWORK_ACTIVATION_BYTES: most activation memory of one training batch of theirs",
    )
    max_storage_bytes: StorageLimit | None = Field(
        default=None,
        description="EPOCHAL_MAX_STORAGE_BYTES: most bytes they store (checkpoints, resume states, datasets)",
    )


class UserCreate(QuotaOverrides):
    name: str = Field(pattern=NAME_PATTERN, description="Unique; letters, digits, and . _ @ -")
    admin: bool = False


class KeyRead(BaseModel):
    """A key as stored: never the key itself, only its first characters, to recognise it."""

    id: int
    user_id: int
    prefix: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None
    revoked_at: UtcDatetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyRead:
        return cls(
            id=key.id,
            user_id=key.user_id,
            prefix=key.prefix,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


class KeyCreated(KeyRead):
    api_key: str = Field(description="The key itself. Shown this once only: store it now.")


class UserRead(BaseModel):
    id: int
    name: str
    admin: bool
    max_active_jobs: int | None
    max_sweep_experiments: int | None
    predictions_per_second: int | None
    max_running_jobs: int | None
    priority: int | None
    max_network_params: int | None
    max_network_flops: int | None
    max_network_activation_bytes: int | None
    max_storage_bytes: int | None
    created_at: UtcDatetime
    keys: list[KeyRead]

    @classmethod
    def of(cls, user: User) -> UserRead:
        return cls(
            id=user.id,
            name=user.name,
            admin=user.admin,
            max_active_jobs=user.max_active_jobs,
            max_sweep_experiments=user.max_sweep_experiments,
            predictions_per_second=user.predictions_per_second,
            max_running_jobs=user.max_running_jobs,
            priority=user.priority,
            max_network_params=user.max_network_params,
            max_network_flops=user.max_network_flops,
            max_network_activation_bytes=user.max_network_activation_bytes,
            max_storage_bytes=user.max_storage_bytes,
            created_at=user.created_at,
            keys=[KeyRead.of(k) for k in user.keys],
        )


class StorageRead(BaseModel):
    """What a user stores against their storage quota."""

    used_bytes: int = Field(
        description="Bytes they store: their jobs' checkpoints and resume states, their datasets' packed arrays and "
        "the uploads being prepared."
    )
    quota_bytes: int = Field(
        description="Their storage quota in effect: their max_storage_bytes, else EPOCHAL_MAX_STORAGE_BYTES. An "
        "upload past it is refused (429)."
    )


class MeRead(UserRead):
    storage: StorageRead = Field(description="What you store, and your storage quota.")


class UserCreated(UserRead):
    api_key: str = Field(description="The user's first key. Shown this once only: give it to them now.")


class UsageRead(BaseModel):
    """What a user is using now."""

    user_id: int
    queued: int = Field(description="Jobs queued (waiting for a slot, or released and about to start).")
    running: int
    worker_seconds: float = Field(description="Worker time of every attempt of their jobs, all time.")
    recent_worker_seconds: float = Field(
        description="The worker time fair share counts against them: decayed, time used one half-life ago "
        "(EPOCHAL_FAIR_SHARE_HALF_LIFE_S) counts half."
    )
    storage_bytes: int = Field(
        description="Bytes they store: their jobs' checkpoints and resume states, their datasets' packed arrays "
        "and the uploads being prepared."
    )
    max_storage_bytes: int = Field(
        description="Their storage quota in effect (their max_storage_bytes, else EPOCHAL_MAX_STORAGE_BYTES): uploads "
        "past it: 429."
    )
    max_running_jobs: int = Field(description="How many of their jobs may run at once (their cap in effect).")
    priority: int = Field(description="Their priority, added to each of their jobs' own.")
