"""Answering predictions: verify the caller, find their network, decode the uploads, call it through its batcher.

The blocking part (the key, the rate limit, reading the uploads, database lookups, loading a network on a
cache miss, decoding images) runs in one worker thread per request, so the event loop only ever waits and
a request makes one hop to a thread before its model call (each hop costs about as much CPU as the model
call itself); the model call goes through the network's micro-batcher, where concurrent requests share one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import redis
from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, defer, lazyload
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from api.http.callers import Caller, remembered_caller, verified_caller
from api.http.errors import conflict, not_found
from api.http.hot_cache import HotCache
from api.http.metrics import PREDICTION_LOOKUPS
from api.http.rate_limits import (
    AllowanceWindow,
    FallbackWindow,
    LocalOnly,
    MovingWindow,
    NeedsRefill,
    SharedMovingWindow,
)
from api.schemas.predictions import PredictionRead
from api.serving.decode_budget import DECODING
from api.serving.predictors import ServedModel, get_predictor_cache
from config import Settings, get_settings
from domain.access import best_visible_experiment, in_id_range, owned, visible_experiment
from domain.datasets import check_visible
from domain.lifecycle import Status
from domain.quotas import check_prediction_rate
from domain.registry import default_version, resolve, version_experiment
from infra import events
from models import Artifact, Experiment, ModelVersion, User
from models.db import get_sessionmaker
from training.errors import ImageTooLarge, InvalidImage
from training.image_limits import DecodeLimits
from training.results import CHECKPOINT_NAME

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MiB = 2**20
# A request this small (an MNIST digit is under 1 KiB, a cats-vs-dogs photo tens of KiB) is decoded on the event
# loop when everything else it needs is in memory: a decode costs less than the hop to a thread would.
IN_LOOP_BODY_BYTES = 64 * 1024
Checkpoint = tuple[int, str]  # the checkpoint artifact's id and sha256: its megabytes are read on a cache miss only
Found = tuple[Experiment, Checkpoint | None]
FindExperiment = Callable[[Session, User], Found]


@dataclass(frozen=True)
class Lookup:
    """How a route finds the network it serves: `find` in the database; `experiment_id` when it names one;
    `reference` when it names a model's version or a dataset (`("model", "digits@staging")`, `("dataset",
    "mnist")`), whose resolution is remembered per caller."""

    find: FindExperiment
    experiment_id: int | None = None
    reference: tuple[str, str] | None = None


# Reads the request's uploads as (part name or None, bytes): called in the worker thread, after the rate check.
ReadImages = Callable[[], list[tuple[str | None, bytes]]]


@lru_cache
def prediction_window() -> FallbackWindow:
    # In the broker's Redis (the process's one client, events.redis_client), so N API processes (EPOCHAL_API_WORKERS,
    # or several hosts) share one window per user, counted here from an allowance refilled a chunk at a time (a
    # round trip per chunk, not per prediction); per process only while Redis does not answer.
    shared = AllowanceWindow(SharedMovingWindow(events.redis_client(), window_s=1.0), window_s=1.0)
    return FallbackWindow(shared, MovingWindow(window_s=1.0), errors=(redis.RedisError, OSError))


FROM_MEMORY, FROM_DATABASE = PREDICTION_LOOKUPS.labels("memory"), PREDICTION_LOOKUPS.labels("database")


@dataclass(frozen=True, slots=True)
class ServedRef:
    """A succeeded experiment's checkpoint, as a prediction by id needs it: never changes once written."""

    experiment_id: int
    owner_id: int
    sha256: str


# An experiment's id, its owner's and a 64-character digest, with the dictionary's and the LRU's overhead.
SERVED_REF_BYTES = 512


@lru_cache
def served_refs() -> HotCache[int, ServedRef]:
    return HotCache.configured(SERVED_REF_BYTES)


# The caller's id and a reference of up to a model name, an alias and a separator (about 150 characters) as the key,
# and a ServedRef as the value.
RESOLVED_BYTES = 768
Resolution = tuple[int, str, str]  # (the caller's user id, *Lookup.reference)


@lru_cache
def resolved_refs() -> HotCache[Resolution, ServedRef]:
    """What a model reference or a dataset's predictions resolved to for one caller: the whole decision (who may
    read the model, where the alias points, which default or best experiment applies) is in the entry, so the key
    holds the caller. Every write that can move it announces itself (domain/registry.py, worker/jobs.py)."""
    return HotCache.configured(RESOLVED_BYTES)


def by_id(experiment_id: int) -> Lookup:
    def find(session: Session, user: User) -> Found:
        # One query for the experiment, limited to what the caller may see (access.owned), and its checkpoint's id
        # and sha256; without what a prediction never reads: the evaluation that visible_experiment loads, the
        # attempts every other read loads (a query each) and the count of epochs (a subquery). SQL was the largest
        # share of this route's CPU. A miss goes through visible_experiment for its one 404 wording.
        if in_id_range(experiment_id):
            is_checkpoint = (Artifact.experiment_id == Experiment.id) & (Artifact.name == CHECKPOINT_NAME)
            statement = (
                select(Experiment, Artifact.id, Artifact.sha256)
                .outerjoin(Artifact, is_checkpoint)
                .where(Experiment.id == experiment_id)
                .options(lazyload(Experiment.attempts), defer(Experiment.epochs_done))  # type: ignore[attr-defined]
            )
            row = session.execute(owned(statement, user, Experiment)).first()
            if row is not None:
                experiment, artifact_id, sha256 = row
                return experiment, None if artifact_id is None else (artifact_id, sha256)
        experiment = visible_experiment(session, user, experiment_id)
        return experiment, _checkpoint(session, experiment)

    return Lookup(find, experiment_id)


def _pinned(session: Session, version: ModelVersion) -> Found:
    # A version serves the checkpoint it was registered with: under the sha256 it was pinned to.
    experiment = version_experiment(session, version)
    checkpoint = _checkpoint(session, experiment)
    return experiment, None if checkpoint is None else (checkpoint[0], version.checkpoint_sha256)


def best_on(dataset: str) -> Lookup:
    """The caller's default model for `dataset` if they set one, else the class-wide default an admin set, else
    their best succeeded experiment on it by validation accuracy."""

    def find(session: Session, user: User) -> Found:
        check_visible(session, user, dataset)  # another user's private dataset: a 404 as for a missing one
        version = default_version(session, user, dataset)
        if version is not None:
            return _pinned(session, version)
        experiment = best_visible_experiment(session, user, dataset)
        if experiment is None:
            raise not_found(
                f"no succeeded experiment on {dataset} yet; POST /experiments with dataset {dataset!s} and wait "
                "for it to succeed"
            )
        return experiment, _checkpoint(session, experiment)

    # Remembered per caller: a default set or cleared, a model changed and an experiment succeeding are announced.
    return Lookup(find, reference=("dataset", dataset))


def by_model(ref: str) -> Lookup:
    """The version `ref` names (`name`: its @production, `name@alias`, `name:3`), if the caller may read the model.

    Served as the version was registered: with the checkpoint sha256 it was pinned to, so bytes changed since are
    refused by the same integrity check as every checkpoint (a 409).
    """

    def find(session: Session, user: User) -> Found:
        _model, version = resolve(session, user, ref)
        return _pinned(session, version)

    # Remembered per caller: the registry announces every move of an alias and every change to a model.
    return Lookup(find, reference=("model", ref))


def read_image(upload: StarletteUpload, part: str | None = None) -> bytes:
    """The upload's bytes; 413 past MAX_IMAGE_BYTES (read no further than that). Blocking: a worker thread's job."""
    return capped(upload.file.read(MAX_IMAGE_BYTES + 1), part)


def capped(data: bytes, part: str | None = None) -> bytes:
    """`data`, or a 413 if it is more than MAX_IMAGE_BYTES."""
    if len(data) > MAX_IMAGE_BYTES:
        limit = f"{MAX_IMAGE_BYTES // 2**20} MiB"
        raise HTTPException(status_code=413, detail=f"{_prefix(part)}images must be at most {limit}")
    return data


def _prefix(part: str | None) -> str:
    return f"{part}: " if part else ""


def _checkpoint(session: Session, experiment: Experiment) -> Checkpoint | None:
    row = session.execute(
        select(Artifact.id, Artifact.sha256).where(
            Artifact.experiment_id == experiment.id, Artifact.name == CHECKPOINT_NAME
        )
    ).first()
    return None if row is None else (row[0], row[1])


def _decode(served: ServedModel, images: list[tuple[str | None, bytes]], settings: Settings) -> np.ndarray:
    limits = DecodeLimits(max_pixels=settings.max_image_pixels, max_bytes=settings.max_image_decoded_bytes)
    # Every image's cost from its header first: a request over its bound is refused before anything is decoded.
    costs = []
    for part, data in images:
        with _refused_as_http(part):
            costs.append(served.predictor.decode_cost(data, limits))
    total, cap = sum(costs), settings.max_batch_decoded_bytes
    if total > cap:
        raise HTTPException(
            status_code=413,
            detail=(
                f"the {len(images)} images of this request take {total / MiB:.1f} MiB decoded together, and one "
                f"request may take at most {cap / MiB:g} MiB (EPOCHAL_MAX_BATCH_DECODED_BYTES); split it into "
                "smaller batches, or resize the images (the network sees them at a few hundred pixels a side)"
            ),
        )
    arrays = []
    for (part, data), cost in zip(images, costs, strict=True):
        with DECODING.reserve(cost, settings.max_decoding_bytes), _refused_as_http(part):
            arrays.append(served.predictor.preprocess(data, limits))
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


@contextmanager
def _refused_as_http(part: str | None) -> Iterator[None]:
    """The decoder's refusals as the HTTP answers they are, naming the batch part when there is one."""
    try:
        yield
    except InvalidImage as exc:
        raise HTTPException(status_code=415, detail=f"{_prefix(part)}{exc}") from exc
    except ImageTooLarge as exc:
        raise HTTPException(status_code=413, detail=f"{_prefix(part)}{exc}") from exc


def _prepare(
    request: Request, key: str, lookup: Lookup, images: int, read: ReadImages
) -> tuple[int, ServedModel, np.ndarray]:
    # In the order a request is refused on every route: the key (401), the caller's rate (429), then what they sent.
    settings = get_settings()
    refs, resolved = served_refs(), resolved_refs()
    generation, resolved_generation = refs.generation, resolved.generation  # before the read: api/http/hot_cache.py
    with get_sessionmaker()() as session:
        user, caller = verified_caller(session, request, key)
        check_prediction_rate(settings, caller, prediction_window(), images=images)
        uploads = read()
        experiment, checkpoint = lookup.find(session, user)
        if experiment.status is not Status.SUCCEEDED:
            raise conflict(
                f"experiment {experiment.id} is {experiment.status}; predictions need a succeeded experiment"
            )
        if checkpoint is None:
            raise not_found(
                f"experiment {experiment.id} has no artifact {CHECKPOINT_NAME!r} (it is {experiment.status}); "
                f"GET /experiments/{experiment.id}/artifacts lists what it has"
            )
        artifact_id, sha256 = checkpoint
        content = lambda: session.scalars(select(Artifact.content).where(Artifact.id == artifact_id)).one()  # noqa: E731
        served = get_predictor_cache().get(experiment, sha256, content)
        experiment_id = experiment.id
        ref = ServedRef(experiment_id, experiment.owner_id, sha256)
        if lookup.experiment_id is not None:
            refs.put(experiment_id, ref, generation)
        elif lookup.reference is not None:
            resolved.put((user.id, *lookup.reference), ref, resolved_generation)
    # The connection went back to the pool as the block ended, before the decoding and the model call: requests
    # waiting in the batcher must not hold the pool's connections.
    # Decoded once, to the network's input array: the batcher only concatenates.
    return experiment_id, served, _decode(served, uploads, settings)


def _from_memory(request: Request, key: str, lookup: Lookup, images: int) -> tuple[int, ServedModel] | None:
    """The experiment's id and network when everything this request needs is in memory; None: ask `_prepare`.

    Refuses as `_prepare` would (a 429 from the caller's allowance or, while Redis is down, the in-memory window);
    never decides a 401 or a 404: a key, an experiment or a resolution it does not hold goes to the database.
    """
    length = request.headers.get("content-length")
    if length is None or not length.isdigit() or int(length) > IN_LOOP_BODY_BYTES:
        return None
    caller = remembered_caller(request, key)
    ref = None if caller is None else _remembered(lookup, caller)
    if caller is None or ref is None:
        return None
    served = get_predictor_cache().peek(ref.sha256)
    if served is None:
        return None
    try:
        check_prediction_rate(get_settings(), caller, LocalOnly(prediction_window()), images=images)
    except NeedsRefill:
        return None
    return ref.experiment_id, served


def _remembered(lookup: Lookup, caller: Caller) -> ServedRef | None:
    """The checkpoint `lookup` leads this caller to, if this process decided it a moment ago and may serve it."""
    if lookup.experiment_id is not None:
        ref = served_refs().get(lookup.experiment_id)  # one entry per experiment: whose it is is checked here
        return ref if ref is not None and (caller.admin or ref.owner_id == caller.id) else None
    if lookup.reference is not None:
        return resolved_refs().get((caller.id, *lookup.reference))  # decided for this caller: the key holds them
    return None


async def predict(request: Request, key: str, lookup: Lookup, images: int, read: ReadImages) -> list[PredictionRead]:
    """One prediction per image of `read()`, in order, for the caller whose unverified bearer key is `key`.

    `images` is what the request counts against the caller's rate, known before anything is read. `read`
    pairs each upload's bytes with the name of its part; a part name is given for batches only: an error
    about one image then says which one it was.

    Once warm, a small request is answered without SQL, Redis or a thread before its model call: the caller, the
    experiment's checkpoint (or what the caller's model reference or dataset resolved to) and the caller's rate
    allowance are in memory (`_from_memory`). Anything missing, and any large body, goes the whole way through
    `_prepare` in a worker thread, which fills those caches again.
    """
    in_memory = _from_memory(request, key, lookup, images)
    if in_memory is None:
        FROM_DATABASE.inc()
        experiment_id, served, inputs = await run_in_threadpool(_prepare, request, key, lookup, images, read)
    else:
        FROM_MEMORY.inc()
        experiment_id, served = in_memory
        inputs = _decode(served, read(), get_settings())
    outputs = await served.batcher.predict(inputs)
    return [
        PredictionRead(
            experiment_id=experiment_id,
            label=p.label,
            class_index=p.class_index,
            probabilities=p.probabilities,
            outputs=p.outputs,
        )
        for p in served.predictor.interpret(outputs)
    ]
