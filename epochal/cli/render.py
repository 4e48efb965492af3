"""Rich renderables for experiments and sweeps: tables, a sparkline, a confusion matrix in cells."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from epochal.client.types import (
    ComparisonRow,
    ConfusionMatrix,
    EpochMetric,
    Experiment,
    NetworkCheck,
    NetworkPreset,
    Sweep,
)

SPARKS = "▁▂▃▄▅▆▇█"
STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def status_text(status: str) -> Text:
    return Text(status, style=f"bold {STATUS_STYLE.get(status, '')}")


def local_time(moment: str, now: datetime | None = None) -> str:
    """An API time as the reader's local clock: HH:MM today, with the date on any other day."""
    local = datetime.fromisoformat(moment).astimezone()
    today = (now or datetime.now().astimezone()).date()
    return local.strftime("%H:%M" if local.date() == today else "%Y-%m-%d %H:%M")


def standing(experiment: Experiment) -> str | None:
    """Where a queued job stands, as the single read of it says ("position 3 · starts ~14:05 (estimate)"); None
    for any other job, or for a queued one read from a list (lists do not work the position out)."""
    position = experiment.get("queue_position")
    if experiment["status"] != "queued" or position is None:
        return None
    start = experiment.get("estimated_start")
    when = f"starts ~{local_time(start)} (estimate)" if start else "no start estimate yet (no epoch timed on its queue)"
    return f"position {position} · {when}"


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per value, scaled between the smallest and largest: the shape of a curve in a line."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low or 1.0
    return "".join(" " if v is None else SPARKS[round((v - low) / span * (len(SPARKS) - 1))] for v in values)


def describe(experiment: Experiment) -> str:
    head = experiment["head"]
    return (
        f"{experiment['dataset']} {experiment['network']} {experiment['optimizer']} "
        f"head {head['units']}x{head['activation']} {experiment['loss']}"
    )


def summary_table(experiment: Experiment) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    summary = experiment["summary"]
    rows: list[tuple[str, str | Text]] = [
        ("experiment", f"{experiment['id']}" + (f" ({experiment['name']})" if experiment["name"] else "")),
        ("status", status_text(experiment["status"])),
        ("spec", describe(experiment)),
        ("training", f"{experiment['epochs']} epochs, batch {experiment['batch_size']}, seed {experiment['seed']}"),
        ("learning rate", fmt(experiment["learning_rate"], 6)),
        ("epochs done", f"{summary['epochs_done']}/{experiment['epochs']}"),
        ("best epoch", fmt(summary["best_epoch"])),
        ("best val accuracy", fmt(summary["best_val_accuracy"])),
        ("test accuracy", fmt(summary["test_accuracy"])),
        ("test loss", fmt(summary["test_loss"])),
        ("device", fmt(experiment.get("device"))),
    ]
    if where := standing(experiment):
        rows.insert(2, ("queue", Text(f"{experiment['queue']}: {where}", style="yellow")))
    if experiment.get("sweep_id"):
        rows.append(("sweep", str(experiment["sweep_id"])))
    if experiment.get("error"):
        rows.append(("error", Text(str(experiment["error"]), style="red")))
    rows.extend(("warning", Text(w, style="yellow")) for w in experiment.get("warnings", []))
    for name, value in rows:
        table.add_row(name, value)
    return table


def metrics_table(epochs: Sequence[EpochMetric], last: int | None = None) -> Table:
    table = Table(title="metrics per epoch", title_justify="left")
    shown = epochs[-last:] if last else epochs
    # The rate column only where a rate was recorded (a server from before it, or old epochs, have none).
    rates = any(metric.get("learning_rate") is not None for metric in shown)
    for name in (
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "seconds",
        *(["learning_rate"] if rates else []),
    ):
        table.add_column(name, justify="right")
    for metric in shown:
        rate = metric.get("learning_rate")
        table.add_row(
            str(metric["epoch"]),
            fmt(metric["loss"]),
            fmt(metric["accuracy"]),
            fmt(metric["val_loss"]),
            fmt(metric["val_accuracy"]),
            fmt(metric["seconds"], 1),
            *([f"{rate:.3g}" if rate is not None else "-"] if rates else []),
        )
    return table


def _cell_style(diagonal: bool, share: float) -> str:
    # Right answers green, mistakes red; a cell holding a large share of its true class gets a solid background.
    if share == 0:
        return "dim"
    colour = "green" if diagonal else "red"
    return f"bold white on {colour}" if share >= 0.2 else colour


def confusion_matrix_table(matrix: ConfusionMatrix) -> Table:
    """Rows are true classes, columns predicted; a cell's shade grows with its share of the row."""
    table = Table(title="confusion matrix", title_justify="left", caption="rows: true, columns: predicted")
    table.add_column("", style="bold")
    for label in matrix["labels"]:
        table.add_column(label, justify="right")
    for i, (label, row) in enumerate(zip(matrix["labels"], matrix["matrix"], strict=False)):
        total = sum(row) or 1
        cells = [Text(str(count), style=_cell_style(i == j, count / total)) for j, count in enumerate(row)]
        table.add_row(label, *cells)
    return table


def report_table(report: dict[str, Any], labels: Sequence[str]) -> Table:
    """scikit-learn's classification report: one row per class, then the averages."""
    table = Table(title="classification report", title_justify="left")
    table.add_column("class")
    for name in ("precision", "recall", "f1-score", "support"):
        table.add_column(name, justify="right")
    for name in [*labels, "macro avg", "weighted avg"]:
        row = report.get(name)
        if isinstance(row, dict):
            table.add_row(
                name, *(fmt(row.get(k), 3) for k in ("precision", "recall", "f1-score")), fmt(row.get("support"))
            )
    if isinstance(report.get("accuracy"), float):
        table.add_row("accuracy", "", "", fmt(report["accuracy"], 3), "")
    return table


def status_cell(experiment: Experiment) -> Text:
    """The status, and a queued job's standing after it (a read or a list carries it, a submission's answer not)."""
    cell = status_text(experiment["status"])
    if where := standing(experiment):
        cell.append(f" {where}", style="yellow")
    return cell


def experiments_table(experiments: Sequence[Experiment], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("id", "right"),
        ("status", "left"),
        ("name", "left"),
        ("spec", "left"),
        ("epochs", "right"),
        ("best val acc", "right"),
        ("test acc", "right"),
        ("created", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for e in experiments:
        summary = e["summary"]
        table.add_row(
            str(e["id"]),
            status_cell(e),
            e["name"] or "",
            describe(e),
            f"{summary['epochs_done']}/{e['epochs']}",
            fmt(summary["best_val_accuracy"]),
            fmt(summary["test_accuracy"]),
            e["created_at"][:19].replace("T", " "),
        )
    return table


def ranked_table(rows: Sequence[ComparisonRow]) -> Table:
    table = Table(title="ranked by best validation accuracy", title_justify="left")
    for name in ("rank", "experiment", "configuration", "status", "best epoch", "best val acc", "test acc", "time (s)"):
        table.add_column(name, justify="left" if name in ("configuration", "status") else "right")
    for row in rows:
        table.add_row(
            fmt(row["rank"]),
            str(row["experiment_id"]),
            row["label"] or "",
            status_text(row["status"]),
            fmt(row["best_epoch"]),
            fmt(row["best_val_accuracy"]),
            fmt(row["test_accuracy"]),
            fmt(row["training_seconds"], 1),
        )
    return table


def sweep_view(sweep: Sweep) -> RenderableType:
    counts = ", ".join(f"{n} {status}" for status, n in sweep["status_counts"].items() if n)
    title = f"sweep {sweep['id']}" + (f" ({sweep['name']})" if sweep["name"] else "") + f": {counts}"
    return Group(Text(title, style="bold"), ranked_table(sweep["comparison"]))


def size_in_bytes(count: int) -> str:
    """A byte count as people read it: 1.5 MiB."""
    value, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def network_summary_table(check: NetworkCheck) -> Table:
    """The network's layers as Keras' model.summary() prints them: name (type), output shape, params, inputs."""
    table = Table(title=f"network on input {'x'.join(str(side) for side in check['input_shape'])}")
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    table.add_column("Connected to")
    for layer in check["layers"]:
        shape = ", ".join(["None", *(str(side) for side in layer["output_shape"])])
        table.add_row(
            f"{layer['name']} ({layer['type']})",
            f"({shape})",
            f"{layer['params']:,}",
            ", ".join(layer["inputs"]) or "-",
        )
    return table


def network_figures_table(check: NetworkCheck) -> Table:
    """Its three figures, each beside the limit it is held to (the caller's), and the parameters' breakdown."""
    figures, limits = check["figures"], check["limits"]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column()
    table.add_row(
        "Total params",
        f"{figures['total_params']:,}",
        f"({size_in_bytes(figures['total_params'] * 4)}; limit {limits['params']:,})",
    )
    table.add_row("Trainable params", f"{figures['trainable_params']:,}", "")
    table.add_row("Non-trainable params", f"{figures['non_trainable_params']:,}", "")
    table.add_row("FLOPs per example", f"{figures['flops_per_example']:,}", f"(limit {limits['flops_per_example']:,})")
    table.add_row(
        f"Activations, training batch of {check['batch_size']}",
        size_in_bytes(figures["activation_bytes_training"]),
        f"({figures['activation_bytes_training']:,} bytes; limit {limits['activation_bytes_training']:,})",
    )
    return table


def presets_table(presets: Sequence[NetworkPreset]) -> Table:
    """The preset networks: what each is, which datasets default to it, and its parameters on each dataset."""
    table = Table(title="preset networks (epochal run --network NAME)")
    table.add_column("name", style="bold")
    table.add_column("default for")
    table.add_column("params by dataset")
    table.add_column("description")
    for preset in presets:
        params = ", ".join(f"{name} {figures['total_params']:,}" for name, figures in preset["summaries"].items())
        table.add_row(preset["name"], ", ".join(preset["default_for"]) or "-", params or "-", preset["description"])
    return table
