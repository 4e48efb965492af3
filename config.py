"""Every setting of the service, read in one place from ``EPOCHAL_*`` environment variables.

The defaults run on a fresh machine with no server installed: a SQLite file and an embedded
Redis broker on a unix socket, both under the state folder (``var/``). Real deployments set
``EPOCHAL_DATABASE_URL`` (PostgreSQL) and ``EPOCHAL_BROKER_URL`` (Redis).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The Celery task name is the contract between the API (which enqueues by name) and the worker.
TRAIN_TASK_NAME = "epochal.train_experiment"
ENV_PREFIX = "EPOCHAL_"
DATABASE_SCHEMES = ("sqlite", "postgresql+psycopg")  # plain postgresql:// means psycopg2, not installed
BROKER_SCHEMES = ("redis", "rediss", "redis+socket")


class SettingsError(RuntimeError):
    """A setting has a value the service cannot use; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    state_dir: Path = Field(
        default=Path("var"),
        description="Folder for the embedded database, broker socket and scratch files.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; default: SQLite file in the state folder.",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker URL; default: embedded Redis on a unix socket in the state folder.",
    )
    data_dir: Path = Field(default=Path("data"), description="Folder the dataset loaders read first.")
    default_queue: str = Field(default="training", description="Queue an experiment goes to.")
    task_time_limit_s: int = Field(default=6 * 3600, gt=0, description="Hard limit on one training job.")
    predictor_cache_size: int = Field(default=4, ge=1, description="Trained networks the API keeps loaded.")

    worker_gpus: str = Field(
        default="",
        pattern=r"^[0-9]*(,[0-9]+)*$",
        description="GPU ids a worker spreads its child processes over, one GPU each (e.g. '0,1'); empty: all.",
    )

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if value and urlparse(value).scheme not in DATABASE_SCHEMES:
            raise ValueError(f"use a sqlite:/// or postgresql+psycopg:// URL, not {value!r}")
        return value

    @field_validator("broker_url")
    @classmethod
    def _supported_broker(cls, value: str) -> str:
        if value and urlparse(value).scheme not in BROKER_SCHEMES:
            raise ValueError(f"use a redis://host:6379/0 (or redis+socket:///path) URL, not {value!r}")
        return value

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        state = self.state_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{state / 'epochal.db'}"
        if not self.broker_url:
            self.broker_url = f"redis+socket://{state / 'broker.sock'}"
        return self

    @property
    def broker_visibility_timeout_s(self) -> int:
        """Redis redelivers an unacknowledged job after this long: it must outlast the longest job."""
        return self.task_time_limit_s + 3600

    @property
    def gpu_ids(self) -> list[str]:
        return [gpu for gpu in self.worker_gpus.split(",") if gpu]


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{ENV_PREFIX}{field.upper()}: {message}")
    return "; ".join(lines)


@lru_cache
def get_settings() -> Settings:
    """The settings of this process; raises `SettingsError` naming each variable with a bad value."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(f"invalid settings: {_describe(error)}") from None
