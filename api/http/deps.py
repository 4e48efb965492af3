"""Request-scoped dependencies: a short database session, the settings; and how submissions leave the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from config import Settings, get_settings
from domain.errors import Unavailable
from infra import events
from infra.task_publisher import BrokerUnavailable, nudge_dispatcher
from models.db import get_sessionmaker


def get_session() -> Iterator[Session]:
    with get_sessionmaker()() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


class BrokerPublisher:
    """domain.submission's Publisher: a nudge to the dispatcher over the broker, the jobs' events on its streams."""

    def nudge(self) -> None:
        try:
            nudge_dispatcher()
        except BrokerUnavailable as exc:
            raise Unavailable(str(exc)) from exc

    def queued_afresh(self, rows: list[tuple[int, int | None]], sweep_id: int | None) -> None:
        events.queued_afresh(rows, sweep_id)

    def failed(self, experiment_id: int, sweep_id: int | None, error: str) -> None:
        events.status(experiment_id, sweep_id, "failed", error=error)


publisher = BrokerPublisher()
