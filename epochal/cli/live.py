"""Live views that follow a job to its end: redrawn in place on a terminal, one line per change elsewhere."""

from __future__ import annotations

import time

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.table import Table
from rich.text import Text

from epochal.cli.render import fmt, metrics_table, sparkline, standing, status_cell, status_text
from epochal.client import Client, Progress
from epochal.client.types import EpochMetric, Experiment, Sweep


def _headline(experiment: Experiment) -> Text:
    text = Text(f"experiment {experiment['id']}" + (f" ({experiment['name']})" if experiment["name"] else "") + ": ")
    text.append_text(status_text(experiment["status"]))
    if where := standing(experiment):
        text.append(f", {where}", style="yellow")
    if experiment["cancel_requested"] and experiment["status"] == "running":
        text.append(" (cancel requested: stops after this epoch)", style="magenta")
    if experiment.get("error"):
        text.append(f"\n{experiment['error']}", style="red")
    return text


def _experiment_view(event: Progress, bar: Bar) -> RenderableType:
    parts: list[RenderableType] = [_headline(event.experiment), bar]
    if event.step:
        step = event.step
        parts.append(
            Text(
                f"epoch {step.get('epoch')}: batch {step.get('batch')}/{step.get('batches')}, "
                f"loss {fmt(step.get('loss'))}, accuracy {fmt(step.get('accuracy'))}",
                style="dim",
            )
        )
    if event.epochs:
        parts.append(metrics_table(event.epochs, last=1))
        curve = [m["val_accuracy"] for m in event.epochs]
        parts.append(Text(f"val accuracy {sparkline(curve)} {fmt(curve[-1])}"))
    return Group(*parts)


def _epoch_line(experiment: Experiment, metric: EpochMetric) -> str:
    return (
        f"experiment {experiment['id']}: {experiment['status']}, epoch {metric['epoch']}/{experiment['epochs']}: "
        f"loss {fmt(metric['loss'])} accuracy {fmt(metric['accuracy'])}"
        f" val_loss {fmt(metric['val_loss'])} val_accuracy {fmt(metric['val_accuracy'])}"
    )


def _log_lines(event: Progress) -> list[str]:
    # Without a terminal (a pipe, a CI log) the view cannot be redrawn: say what changed, once, an epoch a line.
    experiment = event.experiment
    where = standing(experiment)
    lines = [_epoch_line(experiment, m) for m in event.new_epochs] or [
        f"experiment {experiment['id']}: {experiment['status']}" + (f", {where}" if where else "")
    ]
    if experiment.get("error"):
        lines[-1] += f": {experiment['error']}"
    return lines


def _epochs_done(event: Progress) -> float:
    # Finished epochs, plus the share of the current one when the stream reported a step within it.
    step = event.step or {}
    batches = step.get("batches") or 0
    return len(event.epochs) + (step.get("batch", 0) / batches if batches else 0.0)


def follow_experiment(client: Client, experiment_id: int, console: Console, poll_s: float = 1.0) -> Progress:
    """Show the experiment until it ends, each epoch as it finishes; return the last event (final body, all epochs)."""
    bar = Bar(TextColumn("epochs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    task = bar.add_task("epochs", total=None)
    last: Progress | None = None
    if not console.is_terminal:
        for last in client.watch(experiment_id, poll_s):
            if last.step is None:  # steps within an epoch would flood a log
                for line in _log_lines(last):
                    console.print(line, markup=False)
    else:
        with Live(console=console, refresh_per_second=4) as live:
            for last in client.watch(experiment_id, poll_s):
                # A line per finished epoch, kept above the redrawn view: the run's history stays on the screen.
                for metric in last.new_epochs:
                    live.console.print(_epoch_line(last.experiment, metric), markup=False, highlight=False)
                bar.update(task, completed=_epochs_done(last), total=last.experiment["epochs"])
                live.update(_experiment_view(last, bar))
    assert last is not None  # watch always yields a first event
    return last


def _epochs_cell(experiment: Experiment, width: int = 20) -> str:
    done, total = experiment["summary"]["epochs_done"], experiment["epochs"]
    filled = round(width * done / total) if total else 0
    return f"{'█' * filled}{'░' * (width - filled)} {done}/{total}"


def sweep_rows(sweep: Sweep) -> Table:
    """One row per experiment of the sweep, as it is now."""
    labels = {row["experiment_id"]: row["label"] for row in sweep["comparison"]}
    table = Table(title=f"sweep {sweep['id']}" + (f" ({sweep['name']})" if sweep["name"] else ""), title_justify="left")
    for name in ("experiment", "configuration", "status", "epochs", "best val acc"):
        table.add_column(name)
    for experiment in sorted(sweep["experiments"], key=lambda e: e["id"]):
        table.add_row(
            str(experiment["id"]),
            labels.get(experiment["id"]) or experiment["name"] or "",
            status_cell(experiment),
            _epochs_cell(experiment),
            fmt(experiment["summary"]["best_val_accuracy"]),
        )
    return table


def follow_sweep(client: Client, sweep_id: int, console: Console, poll_s: float = 2.0) -> Sweep:
    """Show the sweep's experiments until all have ended, and return the final sweep."""
    sweep = client.sweep(sweep_id)
    if not console.is_terminal:
        last_counts: dict[str, int] = {}
        while True:
            if sweep["status_counts"] != last_counts:
                counts = ", ".join(f"{n} {status}" for status, n in sweep["status_counts"].items() if n)
                console.print(f"sweep {sweep_id}: {counts}")
                last_counts = sweep["status_counts"]
            if sweep["finished"]:
                return sweep
            time.sleep(poll_s)
            sweep = client.sweep(sweep_id)
    with Live(sweep_rows(sweep), console=console, refresh_per_second=2) as live:
        while not sweep["finished"]:
            time.sleep(poll_s)
            sweep = client.sweep(sweep_id)
            live.update(sweep_rows(sweep))
    return sweep
