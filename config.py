"""Every setting of the service, read in one place from ``EPOCHAL_*`` environment variables.

The defaults run on a fresh machine with no server installed: a SQLite file and an embedded
Redis broker on a unix socket, both under the state folder (``var/``). Real deployments set
``EPOCHAL_DATABASE_URL`` (PostgreSQL) and ``EPOCHAL_BROKER_URL`` (Redis).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.url_passwords import redact_url, url_password

# The Celery task names are the contract between the API (which enqueues by name) and the worker.
TRAIN_TASK_NAME = "epochal.train_experiment"
DATASET_TASK_NAME = "epochal.prepare_dataset"
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
    version: str = Field(
        default="",
        description="The service's version (its git commit), set at build or start; empty: the checkout's commit, "
        "else the package's release (infra/version.py). Model cards record it for each training.",
    )
    default_queue: str = Field(default="training", description="Queue an experiment goes to.")
    queues: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_.@-]*(,[A-Za-z0-9_.@-]+)*$",
        description="Comma-separated queues this deployment's workers serve; the default queue is always one.",
    )
    task_time_limit_s: float = Field(default=6 * 3600, gt=0, description="Hard limit on one training attempt.")
    lease_s: float = Field(
        default=60, gt=0, description="A running attempt whose heartbeat is older than this is presumed dead."
    )
    heartbeat_s: float = Field(default=10, gt=0, description="How often a training process renews its lease.")
    reaper_interval_s: float = Field(default=15, gt=0, description="How often the reaper looks for stranded jobs.")
    blob_sweep_grace_s: float = Field(
        default=3600,
        gt=0,
        description="How long a stored blob no dataset references (a prepared upload, a deleted version, a killed "
        "put) is kept before the reaper frees it: longer than an upload takes between its last chunk and its row.",
    )
    take_roles: bool = Field(
        default=True,
        description="Whether this process may take the service's roles (the reaper, the dispatcher): every API and "
        "worker process does by default; one is enough for them to run.",
    )
    # Fair-share dispatch (domain/dispatch.py, upkeep/dispatcher.py): jobs wait in the database and are released to
    # the broker only as worker slots free, so the broker never holds more than the workers can take.
    dispatch_interval_s: float = Field(
        default=5,
        gt=0,
        description="How often the dispatcher looks for free slots even when nothing nudged it (a submission or a "
        "finished job nudges it at once); also its role's lease.",
    )
    slots_per_queue: int = Field(
        default=1,
        ge=1,
        description="Jobs that may be released to a queue at once (running or waiting on the broker), for a queue "
        "EPOCHAL_QUEUE_SLOTS does not list: the sum of the --concurrency of the workers serving it.",
    )
    queue_slots: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9_.@-]+=[0-9]+(,[A-Za-z0-9_.@-]+=[0-9]+)*)?$",
        description="Slots per queue, 'queue=n,...' (e.g. 'gpu=2,training=4'); others get EPOCHAL_SLOTS_PER_QUEUE.",
    )
    fair_share_half_life_s: float = Field(
        default=3600,
        gt=0,
        description="Half-life of the worker time that counts against a user in fair share: time used this long "
        "ago counts half, twice as long ago a quarter.",
    )
    republish_after_s: float = Field(
        default=300, gt=0, description="A queued job nobody claimed is published again after this (then backing off)."
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="A job whose attempts are lost (worker died, no heartbeat) this often fails; so does a dataset "
        "version whose preparations are.",
    )
    prepare_grace_s: float = Field(
        default=600,
        gt=0,
        description="A dataset version still processing this long with no live preparation (its message lost, its "
        "worker dead) is published again by the reaper, at most once per this.",
    )
    progress_interval_s: float = Field(
        default=1.0, ge=0, description="How often a training job publishes its progress within an epoch."
    )
    events_max_s: float = Field(
        default=300, gt=0, description="Longest a live event stream stays open before the client reconnects."
    )
    # An open stream holds no database connection (api/streams/access.py); these bound what streams cost otherwise
    # (a Redis connection and a file descriptor each) and how long a revoked key keeps one open.
    max_streams_per_user: int = Field(
        default=32, ge=1, description="Live event streams one user may have open at once (all API processes)."
    )
    max_streams_per_process: int = Field(
        default=512, ge=1, description="Live event streams one API process relays at once; past it a 503."
    )
    stream_recheck_s: float = Field(
        default=5, gt=0, le=60, description="How often an open event stream checks that its key is still valid."
    )
    db_retry_s: float = Field(
        default=120, ge=0, description="How long a worker retries a database write before giving the attempt up."
    )
    predictor_cache_size: int = Field(default=4, ge=1, description="Trained networks the API keeps loaded.")
    # Which runtime a loaded network's predictions go through (api/serving/runtimes.py). auto: its ONNX export through
    # onnxruntime where that answers as Keras does to 1e-5 on a probe batch, Keras otherwise (logged with the reason).
    serving_runtime: Literal["auto", "keras"] = Field(
        default="auto",
        description="auto: onnxruntime on the ONNX export where it equals Keras, else Keras; keras: only Keras.",
    )
    # Keys and experiments a prediction needs, held by each API process between requests (api/http/hot_cache.py):
    # invalidated on change through the broker, and dropped whenever that channel is lost; this bounds the rest.
    serving_cache_ttl_s: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="Longest an API process serves a key or experiment from memory without reading it again; 0: never.",
    )
    serving_cache_bytes: int = Field(
        default=4 * 2**20, ge=0, description="Memory each of those in-process caches may take (entries x their size)."
    )
    # What a worker (or an API process showing a dataset's images) keeps of the blobs it fetched from the store, on
    # its own disk (infra/blob_cache.py).
    blob_cache_dir: Path | None = Field(
        default=None,
        description="Folder of the local cache of blobs (of the workers and the API); default: blob-cache in the "
        "state folder. Processes of one host may share it.",
    )
    blob_cache_bytes: int = Field(
        default=10 * 2**30,
        ge=0,
        description="Most bytes the blob cache keeps; the least recently used blobs go first (blobs in use stay).",
    )
    # Micro-batching of predictions (api/serving/batcher.py): requests that arrive while the network is busy share its
    # next call. A lone request never waits; 0 turns gathering off (one call per request).
    predict_batch_window_ms: float = Field(
        default=2.0, ge=0, le=1000, description="Longest a queued prediction waits for others to share its call."
    )
    predict_max_batch: int = Field(default=64, ge=1, le=4096, description="Most images in one gathered model call.")
    # Off by default: a line per request costs the prediction route measurable CPU, and a proxy in front usually
    # logs requests anyway. Errors are logged either way.
    access_log: bool = Field(default=False, description="Log one line per HTTP request in the API process.")
    # One process is bound by one core (docs/results/performance.md): past that, more processes on more cores.
    # They share the rate limits (in Redis) and /metrics' counts.
    api_workers: int = Field(default=1, ge=1, le=64, description="API processes behind the one port.")

    # Hostile-input caps: a request, an image or a sweep bigger than these is refused with a 4xx, never served.
    max_body_bytes: int = Field(
        default=25 * 2**20, ge=1024, description="Largest request body; a bigger one is refused (413) as it streams."
    )
    max_json_bytes: int = Field(default=2**20, ge=1024, description="Largest application/json request body.")
    # A dataset upload (POST /datasets) streams into the blob store, so its cap is its own, far above the body cap.
    max_upload_bytes: int = Field(
        default=2 * 2**30,
        ge=1024,
        description="Largest dataset upload (POST /datasets); a bigger one is refused (413) as it streams, and "
        "nothing of it stays stored.",
    )
    max_storage_bytes: int = Field(
        default=20 * 2**30,
        ge=1024,
        description="Most bytes one user stores: their checkpoints, resume states and datasets (packed arrays, and "
        "uploads being prepared); an upload past it is refused (429).",
    )
    # A refused body is still read (and dropped) up to this, so a client that sends all of it before reading
    # gets its 413 rather than a connection reset; past it the connection is closed. 0: close at once.
    max_drain_bytes: int = Field(
        default=100 * 2**20, ge=0, description="Most bytes of a refused (413) body read and dropped before closing."
    )
    max_image_pixels: int = Field(
        default=40_000_000, ge=1, description="Largest uploaded image (width x height), read from its header."
    )
    # What decoding costs is not bounded by the upload's size (a 77 KB PNG can declare 40 megapixels of 16-bit
    # grey): these bound the decoded memory, read from each image's header before anything is decoded.
    max_image_decoded_bytes: int = Field(
        default=64 * 2**20,
        ge=2**20,
        description="Most memory one uploaded image may take decoded (width x height x bytes a pixel); past it a 413.",
    )
    max_batch_decoded_bytes: int = Field(
        default=256 * 2**20,
        ge=2**20,
        description="Most decoded memory the images of one prediction request may take together; past it a 413.",
    )
    max_decoding_bytes: int = Field(
        default=512 * 2**20,
        ge=2**20,
        description="Most decoded image memory one API process holds at once, all requests together; past it a 503.",
    )
    max_sweep_size: int = Field(default=100, ge=1, description="Most experiments one sweep may create.")
    flower_basic_auth: SecretStr = Field(
        default=SecretStr(""),
        description="'user:password' that Flower requires (HTTP basic auth); Flower refuses to start without it.",
    )

    # What one network may cost, checked from its shape arithmetic before anything is built or queued (over one: 422).
    # A user row may override each (NULL there means these apply).
    max_network_params: int = Field(
        default=50_000_000, ge=1, description="Most parameters in one network (Keras' count, moving statistics too)."
    )
    max_network_flops: int = Field(
        default=20_000_000_000,
        ge=1,
        description="Most FLOPs per example in one network (2 x the multiply-adds of its Dense and convolutions).",
    )
    max_network_activation_bytes: int = Field(
        default=8 * 2**30,
        ge=1,
        description="Most activation memory of one training batch (every layer's output x batch x 4 bytes x 2).",
    )
    # On by default: a worker without internet would fail a job that waited its turn; refusing it when submitted
    # says why at once. A deployment whose workers reach the internet (or have Keras' cache filled) turns it off.
    workers_offline: bool = Field(
        default=True,
        description="Whether the workers cannot download: a Backbone with weights 'imagenet' (which the worker "
        "downloads through Keras' cache) is then refused with a 422; false lets them download.",
    )

    # Per-user quotas; a user row may override each (NULL there means these apply). Over one: 429.
    max_active_jobs: int = Field(
        default=100, ge=1, description="Experiments one user may have queued or running at once."
    )
    max_sweep_experiments: int = Field(default=50, ge=1, description="Most experiments in one sweep of one user.")
    # Not an admission quota (that is max_active_jobs): jobs past it are accepted and wait their turn.
    max_running_jobs: int = Field(
        default=100, ge=1, description="Experiments of one user that may run at once; the others wait, queued."
    )
    # Sized for a program, not a person: a plain loop over test images makes ~250 a second on one core, and a
    # fast machine several times that. It guards against floods; a batch of n images counts as n.
    predictions_per_second: int = Field(
        default=1000, ge=1, description="Predictions one user may make per second (all API processes together)."
    )

    worker_gpus: str = Field(
        default="",
        pattern=r"^[0-9]*(,[0-9]+)*$",
        description="GPU ids a worker spreads its child processes over, one GPU each (e.g. '0,1'); empty: all.",
    )

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if value and urlparse(value).scheme not in DATABASE_SCHEMES:
            raise ValueError(f"use a sqlite:/// or postgresql+psycopg:// URL, not {redact_url(value)!r}")
        return value

    @field_validator("broker_url")
    @classmethod
    def _supported_broker(cls, value: str) -> str:
        if value and urlparse(value).scheme not in BROKER_SCHEMES:
            raise ValueError(f"use a redis://host:6379/0 (or redis+socket:///path) URL, not {redact_url(value)!r}")
        return value

    @field_validator("flower_basic_auth")
    @classmethod
    def _user_and_password(cls, value: SecretStr) -> SecretStr:
        user, colon, password = value.get_secret_value().partition(":")
        if value.get_secret_value() and not (user and colon and password):
            raise ValueError("use 'user:password', both parts non-empty")
        return value

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.heartbeat_s * 2 > self.lease_s:
            raise ValueError(
                f"EPOCHAL_HEARTBEAT_S ({self.heartbeat_s}) must be at most half of EPOCHAL_LEASE_S ({self.lease_s}), "
                "so one late heartbeat does not lose a live job"
            )
        return self

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        state = self.state_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{state / 'epochal.db'}"
        if not self.broker_url:
            self.broker_url = f"redis+socket://{state / 'broker.sock'}"
        return self

    @property
    def blob_cache_folder(self) -> Path:
        return self.blob_cache_dir if self.blob_cache_dir is not None else self.state_dir.resolve() / "blob-cache"

    @property
    def broker_visibility_timeout_s(self) -> int:
        """Redis redelivers an unacknowledged job after this long: it must outlast the longest job."""
        return int(self.task_time_limit_s) + 3600

    @property
    def task_soft_time_limit_s(self) -> float:
        """When the job is told to stop (and ends failed saying why) before the hard limit kills it."""
        return self.task_time_limit_s - min(60.0, self.task_time_limit_s / 10)

    @property
    def known_queues(self) -> list[str]:
        """The queues workers of this deployment serve: a job on any other queue would never run."""
        listed = [queue for queue in self.queues.split(",") if queue]
        return listed if self.default_queue in listed else [self.default_queue, *listed]

    def slots_for(self, queue: str) -> int:
        """How many jobs the dispatcher may have released to `queue` at once (EPOCHAL_QUEUE_SLOTS, else the default)."""
        listed = dict(item.split("=") for item in self.queue_slots.split(",") if item)
        return int(listed.get(queue, self.slots_per_queue))

    @property
    def gpu_ids(self) -> list[str]:
        return [gpu for gpu in self.worker_gpus.split(",") if gpu]

    @property
    def secrets(self) -> list[str]:
        """Every password these settings hold, as configured and percent-decoded, longest first."""
        found = {url_password(self.database_url), url_password(self.broker_url)}
        found.add(self.flower_basic_auth.get_secret_value().partition(":")[2])
        found |= {unquote(secret) for secret in found}
        return sorted((secret for secret in found if secret), key=len, reverse=True)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        # A rule across several settings names its variables in its own message.
        lines.append(f"{ENV_PREFIX}{field.upper()}: {message}" if field else message)
    return "; ".join(lines)


@lru_cache
def get_settings() -> Settings:
    """The settings of this process; raises `SettingsError` naming each variable with a bad value."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(f"invalid settings: {_describe(error)}") from None
