"""Liveness of the API and the state of each dependency."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text

from api.deps import SessionDep
from api.queue import broker_reachable
from api.schemas import DependencyState, HealthRead
from config import redact_secrets

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthRead, responses={503: {"model": HealthRead}})
def health(session: SessionDep, response: Response) -> HealthRead:
    """200 when the database and the broker both answer; 503, naming the one that does not, otherwise."""
    try:
        session.execute(text("SELECT 1"))
        database = DependencyState(ok=True, detail="ok")
    except Exception as exc:
        # Driver errors can quote the URL, password included.
        database = DependencyState(ok=False, detail=redact_secrets(f"{type(exc).__name__}: {exc}"))
    broker_ok, broker_detail = broker_reachable()
    broker = DependencyState(ok=broker_ok, detail=broker_detail)
    healthy = database.ok and broker.ok
    if not healthy:
        response.status_code = 503
    return HealthRead(status="ok" if healthy else "degraded", database=database, broker=broker)
