"""Sweeps: one base spec and a grid, one experiment per combination, compared in one table."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.http.auth import BearerKey, CurrentUser, KeyVerifiedRoute, as_caller
from api.http.deps import SessionDep, publisher
from api.http.errors import describe_validation_errors, responses
from api.http.params import PageLimit, PageOffset, SweepId
from api.http.specs import against_datasets
from api.reports.standings import reads_with_standing
from api.reports.sweep_table import STATISTICS, comparison_rows, configuration_rows, sweep_state
from api.schemas.experiments import ExperimentCreate
from api.schemas.sweeps import PATH_SEPARATOR, SweepCreate, SweepRead
from config import get_settings
from domain.access import owned, visible_sweep
from domain.queue_positions import Standing, standings
from domain.quotas import check_sweep_size
from domain.submission import submit
from models import Sweep, User
from models.specs import repeated_experiments

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
# POST /sweeps verifies the key in the same worker-thread hop as the submission, as POST /experiments does (see there).
submissions = APIRouter(prefix="/sweeps", tags=["sweeps"], route_class=KeyVerifiedRoute)

VARIANTS = "variants"  # grid key whose entries are partial specs, e.g. {"head": ..., "loss": ...} pairs
MAX_LABEL_PART, MAX_NAME = 80, 200  # one axis's part of an experiment's name; the name (the spec's max_length)
GRAPH_LABEL_WORDS = 48  # a graph's layer types in its label


def _axis_entries(key: str, values: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, spec overrides) for each value of one grid axis."""
    if key == VARIANTS:
        return [
            (_within(", ".join(f"{k}={_short(v)}" for k, v in entry.items()), f"{key}[{i}]"), entry)
            for i, entry in enumerate(values)
        ]
    return [(_within(f"{key}={_short(value)}", f"{key}[{i}]"), {key: value}) for i, value in enumerate(values)]


def _within(label: str, instead: str) -> str:
    # A whole network graph as a value says nothing in a table and outgrows the name: its place in the grid does.
    return label if len(label) <= MAX_LABEL_PART else instead


def _name(labels: list[str]) -> str:
    name = "; ".join(labels)
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 3] + "..."


def _short(value: Any) -> str:
    if isinstance(value, dict) and isinstance(layers := value.get("layers"), list):
        return _graph_label(layers)
    if isinstance(value, dict):
        return " ".join(str(v) for v in value.values())
    return str(value)


def _graph_label(layers: list[Any]) -> str:
    """A network graph as its layer types, runs of one type counted (`Conv2D x2`), and a digest of the whole graph:
    two graphs that differ only in their arguments get different labels, and the label stays short."""
    types = [str(layer.get("type")) if isinstance(layer, dict) else "?" for layer in layers]
    runs = [(kind, len(list(group))) for kind, group in itertools.groupby(types)]
    words = " ".join(kind if count == 1 else f"{kind} x{count}" for kind, count in runs)
    if len(words) > GRAPH_LABEL_WORDS:
        words = words[: GRAPH_LABEL_WORDS - 3].rstrip() + "..."
    digest = hashlib.sha256(json.dumps(layers, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"graph {digest} ({words})"


class PathUnresolved(Exception):
    """A grid path names a segment the spec does not have: which path, and what is there instead."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"grid.{path} does not resolve: {reason}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."


def _set_path(spec: dict[str, Any], path: str, value: Any) -> None:
    """Set `value` at `path` (network.layers.3.rate) in `spec`, in a copy of each container on the way (the
    containers themselves are left as they were). Every segment but the last must be there
    (a dict's key, a list's index); the last may be a new key of a dict (a layer's argument left to its default),
    which the spec's own check then judges."""
    field, *segments = path.split(PATH_SEPARATOR)
    if field not in spec:
        raise PathUnresolved(
            path, f"segment {field!r}: the base spec has no {field}; give it there, then vary its parts"
        )
    parent: Any = spec
    key: str | int = field
    walked = field
    for depth, segment in enumerate(segments, start=1):
        node = parent[key]
        if isinstance(node, dict | list):
            # Copied on the way down, one level at a time: what the path goes through is the base's or another
            # combination's too; a copy of the whole field would be as deep as a client cares to nest it.
            node = parent[key] = copy.copy(node)
        if isinstance(node, dict):
            if segment not in node and depth < len(segments):
                raise PathUnresolved(
                    path, f"segment {segment!r}: {walked} has no {segment!r} (it has {_shown(sorted(node))})"
                )
            parent, key = node, segment
        elif isinstance(node, list):
            if not (segment.isascii() and segment.isdigit()) or int(segment) >= len(node):
                raise PathUnresolved(
                    path,
                    f"segment {segment!r}: {walked} is a list of {len(node)}; give an index from 0 to {len(node) - 1}",
                )
            parent, key = node, int(segment)
        else:
            hint = (
                " (a preset's name: write its graph in base, GET /networks lists them)" if walked == "network" else ""
            )
            raise PathUnresolved(
                path, f"segment {segment!r}: {walked} is {_shown(node)}, not an object or a list{hint}"
            )
        walked = f"{walked}{PATH_SEPARATOR}{segment}"
    parent[key] = value


def _apply(spec: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Overrides on the spec, in place: whole fields first, then paths into them (which may be into a field the
    same combination sets whole)."""
    spec.update({key: value for key, value in overrides.items() if PATH_SEPARATOR not in key})
    for key, value in overrides.items():
        if PATH_SEPARATOR in key:
            _set_path(spec, key, value)


def expand_grid(body: SweepCreate) -> list[ExperimentCreate]:
    """Every combination of the grid applied to the base spec, validated; 422 naming the first bad entry."""
    # Counted from the axis lengths before anything is expanded: a grid of many long axes costs nothing to refuse.
    # Repeats multiply like one more axis.
    lengths = [len(values) for values in body.grid.values()]
    size, limit = math.prod(lengths) * body.repeats, get_settings().max_sweep_size
    if size > limit:
        repeats = f" x {body.repeats} repeats" if body.repeats > 1 else ""
        raise HTTPException(
            status_code=422,
            detail=f"grid: {' x '.join(map(str, lengths))}{repeats} = {size} combinations is more than the limit of "
            f"{limit} experiments per sweep (EPOCHAL_MAX_SWEEP_SIZE); split the sweep",
        )
    keys = list(body.grid)
    axes = [list(enumerate(_axis_entries(key, values))) for key, values in body.grid.items()]
    combinations = list(itertools.product(*axes))
    expanded = []
    for combination in combinations:
        overrides: dict[str, Any] = {}
        for _index, (_label, entry) in combination:
            overrides.update(entry)
        spec = dict(body.base)  # a path copies what it goes through: the base and the grid's values stay as sent
        label = _name([label for _index, (label, _entry) in combination])
        where = ", ".join(f"grid.{key}[{index}]" for key, (index, _entry) in zip(keys, combination, strict=True))
        try:
            _apply(spec, overrides)
        except PathUnresolved as exc:
            raise HTTPException(status_code=422, detail=f"{exc} ({where})") from None
        try:
            expanded.append(ExperimentCreate.model_validate({**spec, "name": label}))
        except ValidationError as exc:
            problems = describe_validation_errors(list(exc.errors()), whole="spec")
            raise HTTPException(status_code=422, detail=f"{where} ({label}) cannot run: {problems}") from None
    return expanded


@submissions.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepRead,
    responses=responses(400, 404, 409, 413, 422, 429, 503),
)
async def create_sweep(body: SweepCreate, request: Request, key: BearerKey, response: Response) -> SweepRead:
    """Create and queue one experiment per grid combination; nothing is created if any combination is invalid."""
    return await as_caller(request, key, partial(_create_sweep, body, response))


def _create_sweep(body: SweepCreate, response: Response, session: Session, user: User) -> SweepRead:
    settings = get_settings()
    expanded = [against_datasets(session, user, spec) for spec in expand_grid(body)]
    check_sweep_size(settings, user, len(expanded) * body.repeats)
    # The sweep and every experiment it creates belong to the caller.
    sweep = Sweep(name=body.name, base=body.base, grid=body.grid, owner_id=user.id)
    experiments = []
    for spec in expanded:
        for experiment in repeated_experiments(spec, body.repeats):
            experiment.queue = spec.queue or settings.default_queue
            experiment.sweep = sweep
            experiment.owner_id = user.id
            experiments.append(experiment)
    submit(session, experiments, settings, publisher, new_sweep=sweep, quota_of=user)
    response.headers["Location"] = f"/sweeps/{sweep.id}"
    return _sweep_read(session, user, sweep.id)


@router.get("", response_model=list[SweepRead], responses=responses(422))
def list_sweeps(
    session: SessionDep,
    user: CurrentUser,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> list[SweepRead]:
    """Your sweeps (an admin: everyone's), newest first, `limit` at a time (each one carries its experiments)."""
    ids = session.scalars(
        owned(select(Sweep.id), user, Sweep).order_by(Sweep.id.desc()).limit(limit).offset(offset)
    ).all()
    sweeps = [visible_sweep(session, user, sweep_id) for sweep_id in ids]
    # Where the page's queued jobs stand, in one pass over their queues for all the sweeps.
    places = standings(session, get_settings(), [e for sweep in sweeps for e in sweep.experiments])
    return [_sweep_answer(session, sweep, places) for sweep in sweeps]


@router.get("/{sweep_id}", response_model=SweepRead, responses=responses(404, 422))
def read_sweep(sweep_id: SweepId, session: SessionDep, user: CurrentUser) -> SweepRead:
    """Each experiment's status, a table of runs, and one of configurations (repeats together) with their statistics."""
    return _sweep_read(session, user, sweep_id)


def _sweep_read(session: Session, user: User, sweep_id: int) -> SweepRead:
    return _sweep_answer(session, visible_sweep(session, user, sweep_id))


def _sweep_answer(session: Session, sweep: Sweep, places: Mapping[int, Standing] | None = None) -> SweepRead:
    counts: dict[str, int] = {}
    for experiment in sweep.experiments:
        counts[experiment.status.value] = counts.get(experiment.status.value, 0) + 1
    return SweepRead(
        id=sweep.id,
        name=sweep.name,
        base=sweep.base,
        grid=sweep.grid,
        created_at=sweep.created_at,
        status_counts=counts,
        finished=all(e.status.finished for e in sweep.experiments),
        state=sweep_state(sweep.experiments),
        repeats=max((e.repeat or 0 for e in sweep.experiments), default=0) + 1,
        experiments=reads_with_standing(session, get_settings(), sweep.experiments, places),
        comparison=comparison_rows(sweep.experiments),
        configurations=configuration_rows(sweep.experiments),
        statistics=STATISTICS,
    )
