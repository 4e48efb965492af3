"""Liveness of the API, the state of each dependency, and whether the roles' passes (reaper, dispatcher) run."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.http.deps import SessionDep
from api.schemas.health import DependencyState, HealthRead
from domain.dispatch import DISPATCHER_ROLE
from infra.redaction import redact_secrets
from infra.task_publisher import broker_reachable
from models.base import utcnow
from upkeep.reaper import REAPER_ROLE
from upkeep.watch import stalls

router = APIRouter(tags=["health"])

DEGRADED = (
    "The database or the broker does not answer, or the reaper's or the dispatcher's passes stopped (none for three "
    "of its intervals: jobs whose worker died would never end, queued jobs would never reach a worker): the body "
    "names which. Container healthchecks and `serve` restart on a stopped role."
)


def role_states(session: Session, up_since: datetime) -> dict[str, DependencyState]:
    """Whether each role's passes run, from its row; the detail says who ran the last one and when."""
    now = utcnow()
    states = {}
    for watched, state, problem in stalls(session, now, up_since):
        if problem is not None:
            states[watched.role] = DependencyState(ok=False, detail=problem)
        elif state is None or state.last_pass_at is None:
            states[watched.role] = DependencyState(ok=True, detail="starting: no pass yet")
        else:
            age_s = (now - state.last_pass_at).total_seconds()
            states[watched.role] = DependencyState(
                ok=True, detail=f"last pass {age_s:.1f} s ago by {state.last_pass_by}"
            )
    return states


@router.get("/health", response_model=HealthRead, responses={503: {"model": HealthRead, "description": DEGRADED}})
def health(session: SessionDep, request: Request, response: Response) -> HealthRead:
    """200 when the database and the broker answer and the roles' passes run; 503, naming what is wrong, otherwise."""
    try:
        session.execute(text("SELECT 1"))
        database = DependencyState(ok=True, detail="ok")
    except Exception as exc:
        # Driver errors can quote the URL, password included.
        database = DependencyState(ok=False, detail=redact_secrets(f"{type(exc).__name__}: {exc}"))
    broker_ok, broker_detail = broker_reachable()
    broker = DependencyState(ok=broker_ok, detail=broker_detail)
    if database.ok:
        roles = role_states(session, getattr(request.app.state, "started_at", utcnow()))
        reaper, dispatcher = roles[REAPER_ROLE], roles[DISPATCHER_ROLE]
    else:
        reaper = dispatcher = DependencyState(ok=False, detail="unknown: the database does not answer")
    healthy = database.ok and broker.ok and reaper.ok and dispatcher.ok
    if not healthy:
        response.status_code = 503
    return HealthRead(
        status="ok" if healthy else "degraded", database=database, broker=broker, reaper=reaper, dispatcher=dispatcher
    )
