"""Experiments as answered, with where each queued one stands: one pass over its queue for a whole page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from api.schemas.experiments import ExperimentRead
from config import Settings
from domain.queue_positions import Standing, standings
from models import Experiment


def reads_with_standing(
    session: Session,
    settings: Settings,
    experiments: Sequence[Experiment],
    places: Mapping[int, Standing] | None = None,
) -> list[ExperimentRead]:
    """Each experiment's answer; a queued one's with its position and estimated start filled in, from `places`
    when the caller worked them out for more than these experiments at once (a page of sweeps)."""
    if places is None:
        places = standings(session, settings, experiments)
    reads = []
    for experiment in experiments:
        read = ExperimentRead.of(experiment)
        if (place := places.get(experiment.id)) is not None:
            read.queue_position, read.estimated_start = place.position, place.estimated_start
        reads.append(read)
    return reads
