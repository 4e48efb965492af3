"""Following an experiment until it ends: the events `watch` yields, and where they come from.

Today the only source polls GET /experiments/{id} and its /metrics. When the API streams
Server-Sent Events, a second source yields the same `Progress` events from the stream, and
`watch` picks it; callers, the CLI's live view included, do not change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from epochal.client.types import FINISHED, EpochMetric, Experiment


@dataclass(frozen=True)
class Progress:
    """One change: the experiment as it is now, the epochs that are new since the last event, and all so far."""

    experiment: Experiment
    new_epochs: list[EpochMetric] = field(default_factory=list)
    epochs: list[EpochMetric] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.experiment["status"]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _epoch_key(metric: EpochMetric) -> tuple[int, int]:
    # A resumed attempt can train an epoch number again; the attempt tells the two apart.
    return metric.get("attempt", 0), metric["epoch"]


def poll(
    read_experiment: Callable[[], Experiment],
    read_metrics: Callable[[], list[EpochMetric]],
    interval_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Progress]:
    """Yield a first event at once, then one whenever the status or the epochs change; stop after the last status.

    The experiment is read before its metrics, so the event that reports a final status carries every epoch.
    """
    seen: set[tuple[int, int]] = set()
    last_status: str | None = None
    last_cancel: bool | None = None
    while True:
        experiment = read_experiment()
        epochs = read_metrics()
        new = [m for m in epochs if _epoch_key(m) not in seen]
        seen.update(_epoch_key(m) for m in new)
        changed = experiment["status"] != last_status or experiment["cancel_requested"] != last_cancel
        if new or changed:
            yield Progress(experiment, new, epochs)
        if experiment["status"] in FINISHED:
            return
        last_status, last_cancel = experiment["status"], experiment["cancel_requested"]
        sleep(interval_s)
