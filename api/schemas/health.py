"""What /health answers: each dependency's state and the service's."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DependencyState(BaseModel):
    ok: bool
    detail: str


class HealthRead(BaseModel):
    status: str = Field(
        description="'ok' when every dependency answers and the roles' passes run, 'degraded' (and a 503) otherwise."
    )
    database: DependencyState
    broker: DependencyState
    reaper: DependencyState = Field(
        description="Whether the reaper's passes run: not ok after three intervals (EPOCHAL_REAPER_INTERVAL_S) "
        "without one, once this API process is up for three intervals. The detail names the last pass's holder."
    )
    dispatcher: DependencyState = Field(
        description="Whether the dispatcher's passes run (it releases queued jobs to the workers): not ok after three "
        "intervals (EPOCHAL_DISPATCH_INTERVAL_S) without one, once this API process is up for three intervals. The "
        "detail names the last pass's holder."
    )
