"""Following an experiment until it ends: the events `watch` yields, and the two sources of them.

`stream` follows the API's Server-Sent Events (GET /experiments/{id}/events): a change shows as it
happens, and within an epoch too. `poll` reads GET /experiments/{id} and its /metrics every few
seconds, for a service without the events route. Both yield the same `Progress` events, so callers,
the CLI's live view included, do not know which one they got.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from epochal.client.sse import Event
from epochal.client.types import FINISHED, EpochMetric, Experiment

EPOCH_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "attempt")


@dataclass(frozen=True)
class Progress:
    """One change: the experiment as it is now, the epochs that are new since the last event, and all so far."""

    experiment: Experiment
    new_epochs: list[EpochMetric] = field(default_factory=list)
    epochs: list[EpochMetric] = field(default_factory=list)
    # Within an epoch (events only): {"epoch", "batch", "batches", "loss", "accuracy"}, about once a second.
    step: dict[str, Any] | None = None

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
    *,
    seen: set[tuple[int, int]] | None = None,
    last: Experiment | None = None,
) -> Iterator[Progress]:
    """Yield a first event at once, then one whenever the status or the epochs change; stop after the last status.

    The experiment is read before its metrics, so the event that reports a final status carries every epoch.
    `seen` and `last` carry on from another source: what they hold is not reported again.
    """
    seen = set() if seen is None else seen
    last_status = None if last is None else last["status"]
    last_cancel = None if last is None else last["cancel_requested"]
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


def stream(
    read_experiment: Callable[[], Experiment],
    read_metrics: Callable[[], list[EpochMetric]],
    events: Iterable[Event],
    interval_s: float = 1.0,
) -> Iterator[Progress]:
    """Yield a first event at once, then one per status change, finished epoch and in-epoch step, from `events`.

    The stream replays the job's events from its start, so nothing between the first read and the
    stream is missed; what the first read already had is not yielded twice. A terminal status reads
    the metrics again: publishing an event is best effort, the database is the truth. Should the
    stream end before the job, polling every `interval_s` seconds takes over.
    """
    experiment, epochs = read_experiment(), read_metrics()
    seen = {_epoch_key(m) for m in epochs}
    yield Progress(experiment, epochs, epochs)
    if experiment["status"] in FINISHED:
        return
    for event in events:
        if event.name == "epoch":
            metric = cast(EpochMetric, {k: event.data[k] for k in EPOCH_FIELDS if k in event.data})
            if "epoch" not in metric or _epoch_key(metric) in seen:
                continue
            seen.add(_epoch_key(metric))
            epochs = [*epochs, metric]
            yield Progress(experiment, [metric], epochs)
        elif event.name == "progress":
            yield Progress(experiment, [], epochs, step=event.data)
        elif event.name == "status" and event.data.get("status") != experiment["status"]:
            before, experiment = experiment, read_experiment()
            if experiment["status"] in FINISHED:
                everything = read_metrics()
                yield Progress(experiment, [m for m in everything if _epoch_key(m) not in seen], everything)
                return
            # A replayed old status reads the experiment as it is now: an event only if that changed.
            if (experiment["status"], experiment["cancel_requested"]) != (before["status"], before["cancel_requested"]):
                yield Progress(experiment, [], epochs)
    yield from poll(read_experiment, read_metrics, interval_s, seen=seen, last=experiment)
