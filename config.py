"""Every setting of the service, read in one place from ``EPOCHAL_*`` environment variables.

The defaults run on a fresh machine with no server installed: a SQLite file and an embedded
Redis broker on a unix socket, both under the state folder (``var/``). Real deployments set
``EPOCHAL_DATABASE_URL`` (PostgreSQL) and ``EPOCHAL_BROKER_URL`` (Redis).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The Celery task name is the contract between the API (which enqueues by name) and the worker.
TRAIN_TASK_NAME = "epochal.train_experiment"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EPOCHAL_", extra="ignore")

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
