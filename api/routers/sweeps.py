"""Sweeps: one base spec and a grid, one experiment per combination, compared in one table."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
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
from api.reports.standings import reads_with_standing
from api.reports.sweep_table import STATISTICS, comparison_rows, configuration_rows, sweep_state
from api.schemas.experiments import ExperimentCreate
from api.schemas.sweeps import SweepCreate, SweepRead
from config import get_settings
from domain.access import owned, visible_sweep
from domain.quotas import check_sweep_size
from domain.submission import submit
from models import Sweep, User
from models.specs import repeated_experiments

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
# POST /sweeps verifies the key in the same worker-thread hop as the submission, as POST /experiments does (see there).
submissions = APIRouter(prefix="/sweeps", tags=["sweeps"], route_class=KeyVerifiedRoute)

VARIANTS = "variants"  # grid key whose entries are partial specs, e.g. {"head": ..., "loss": ...} pairs
MAX_LABEL = 200  # the spec's name
GRAPH_LABEL_WORDS = 80


def _axis_entries(key: str, values: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, spec overrides) for each value of one grid axis."""
    if key == VARIANTS:
        return [(", ".join(f"{k}={_short(v)}" for k, v in entry.items()), entry) for entry in values]
    return [(f"{key}={_short(value)}", {key: value}) for value in values]


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


def _combination_label(parts: list[str]) -> str:
    """The experiment name of one combination, within the spec's 200 characters (labels name a configuration for
    people; runs are grouped by their specs, so a shortened label never merges two configurations)."""
    label = "; ".join(parts)
    if len(label) <= MAX_LABEL:
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:8]
    return f"{label[: MAX_LABEL - 13].rstrip()}... [{digest}]"


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
        spec: dict[str, Any] = dict(body.base)
        for _index, (_label, overrides) in combination:
            spec.update(overrides)
        label = _combination_label([part for _index, (part, _overrides) in combination])
        try:
            expanded.append(ExperimentCreate.model_validate({**spec, "name": label}))
        except ValidationError as exc:
            where = ", ".join(f"grid.{key}[{index}]" for key, (index, _entry) in zip(keys, combination, strict=True))
            problems = describe_validation_errors(list(exc.errors()), whole="spec")
            raise HTTPException(status_code=422, detail=f"{where} ({label}) cannot run: {problems}") from None
    return expanded


@submissions.post(
    "", status_code=status.HTTP_202_ACCEPTED, response_model=SweepRead, responses=responses(400, 413, 422, 429, 503)
)
async def create_sweep(body: SweepCreate, request: Request, key: BearerKey, response: Response) -> SweepRead:
    """Create and queue one experiment per grid combination; nothing is created if any combination is invalid."""
    return await as_caller(request, key, partial(_create_sweep, body, response))


def _create_sweep(body: SweepCreate, response: Response, session: Session, user: User) -> SweepRead:
    settings = get_settings()
    expanded = expand_grid(body)
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
    return [_sweep_read(session, user, sweep_id) for sweep_id in ids]


@router.get("/{sweep_id}", response_model=SweepRead, responses=responses(404, 422))
def read_sweep(sweep_id: SweepId, session: SessionDep, user: CurrentUser) -> SweepRead:
    """Each experiment's status, a table of runs, and one of configurations (repeats together) with their statistics."""
    return _sweep_read(session, user, sweep_id)


def _sweep_read(session: Session, user: User, sweep_id: int) -> SweepRead:
    sweep = visible_sweep(session, user, sweep_id)
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
        experiments=reads_with_standing(session, get_settings(), sweep.experiments),
        comparison=comparison_rows(sweep.experiments),
        configurations=configuration_rows(sweep.experiments),
        statistics=STATISTICS,
    )
