"""Queries that more than one caller needs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.states import Status
from models.tables import Experiment


def best_experiment(session: Session, dataset: str, owner_id: int | None = None) -> Experiment | None:
    """The succeeded experiment on `dataset` with the highest validation accuracy (newest on a tie).

    With `owner_id`, only that user's experiments compete.
    """
    conditions = [Experiment.dataset == dataset, Experiment.status == Status.SUCCEEDED]
    if owner_id is not None:
        conditions.append(Experiment.owner_id == owner_id)
    return session.scalars(
        select(Experiment)
        .where(*conditions)
        .order_by(Experiment.best_val_accuracy.desc(), Experiment.id.desc())
        .limit(1)
    ).first()
