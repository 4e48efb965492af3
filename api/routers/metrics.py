"""Prometheus metrics for admins: `GET /metrics` with an admin's key as the bearer token."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.http.auth import CurrentUser
from api.http.errors import responses
from api.http.metrics import scrape_registry

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "The Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
        **responses(403),
    },
)
async def metrics(user: CurrentUser) -> Response:
    """Request counts and latency by route, jobs by status, queue depth, epochs trained, leases of running jobs."""
    if not user.admin:
        raise HTTPException(status_code=403, detail="only an admin can read the service's metrics; use an admin's key")
    # Reading the database and the broker blocks: off the event loop.
    body = await run_in_threadpool(lambda: generate_latest(scrape_registry()))
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
