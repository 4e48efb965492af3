"""Liveness of the API, the state of each dependency, and whether the reaper's passes run."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.http.deps import SessionDep
from api.schemas.health import DependencyState, HealthRead
from infra.redaction import redact_secrets
from infra.task_publisher import broker_reachable
from models.base import utcnow
from models.roles import read_role
from upkeep.reaper import REAPER_ROLE, stalled

router = APIRouter(tags=["health"])

DEGRADED = (
    "The database or the broker does not answer, or no reaper pass ran for three reaper intervals (jobs whose "
    "worker died would never be settled): the body names which. Container healthchecks and `serve` restart on it."
)


def reaper_state(session: Session, up_since: datetime) -> DependencyState:
    """Whether passes run, from the role's row; the detail says who ran the last one and when."""
    state = read_role(session, REAPER_ROLE)
    now = utcnow()
    problem = stalled(state, now, up_since)
    if problem is not None:
        return DependencyState(ok=False, detail=problem)
    if state is None or state.last_pass_at is None:
        return DependencyState(ok=True, detail="starting: no pass yet")
    age_s = (now - state.last_pass_at).total_seconds()
    return DependencyState(ok=True, detail=f"last pass {age_s:.1f} s ago by {state.last_pass_by}")


@router.get("/health", response_model=HealthRead, responses={503: {"model": HealthRead, "description": DEGRADED}})
def health(session: SessionDep, request: Request, response: Response) -> HealthRead:
    """200 when the database and the broker answer and the reaper's passes run; 503, naming what is wrong, otherwise."""
    try:
        session.execute(text("SELECT 1"))
        database = DependencyState(ok=True, detail="ok")
    except Exception as exc:
        # Driver errors can quote the URL, password included.
        database = DependencyState(ok=False, detail=redact_secrets(f"{type(exc).__name__}: {exc}"))
    broker_ok, broker_detail = broker_reachable()
    broker = DependencyState(ok=broker_ok, detail=broker_detail)
    if database.ok:
        reaper = reaper_state(session, getattr(request.app.state, "started_at", utcnow()))
    else:
        reaper = DependencyState(ok=False, detail="unknown: the database does not answer")
    healthy = database.ok and broker.ok and reaper.ok
    if not healthy:
        response.status_code = 503
    return HealthRead(status="ok" if healthy else "degraded", database=database, broker=broker, reaper=reaper)
