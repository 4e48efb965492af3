"""PNG charts of stored results: training history, confusion matrix, a sweep's curves.

Pure functions of plain data. They draw on `matplotlib.figure.Figure` with the Agg canvas and never
touch pyplot, whose global figure registry is not safe across the server's worker threads.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 100
TRAIN_COLOR = "tab:blue"
VALIDATION_COLOR = "tab:orange"
# (panel title, y label, train series, validation series)
HISTORY_PANELS = (
    ("loss", "loss", "loss", "val_loss"),
    ("accuracy", "accuracy", "accuracy", "val_accuracy"),
)


def _gapped(values: Sequence[float | None]) -> list[float]:
    # NaN makes matplotlib break the line, so a diverged epoch shows as a gap instead of a false value.
    return [math.nan if v is None else float(v) for v in values]


def _has_values(values: Sequence[float | None]) -> bool:
    return any(v is not None and math.isfinite(v) for v in values)


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    # No "Software" text chunk: the same data then always gives the same bytes.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _note(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", color="0.4", fontsize=11)


def history_png(
    epochs: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    title: str,
) -> bytes:
    """Loss and accuracy per epoch, train and validation, side by side; None values are gaps."""
    figure = Figure(figsize=(11, 4.2), layout="tight")
    figure.suptitle(title)
    for axes, (panel, ylabel, train_key, validation_key) in zip(figure.subplots(1, 2), HISTORY_PANELS, strict=True):
        drawn = False
        for key, label, color in ((train_key, "train", TRAIN_COLOR), (validation_key, "validation", VALIDATION_COLOR)):
            values = list(series.get(key, []))
            if not epochs or not _has_values(values):
                continue
            # Markers too: an epoch standing alone between two gaps would be invisible as a line.
            axes.plot(list(epochs), _gapped(values), marker="o", markersize=4, color=color, label=label)
            drawn = True
        axes.set_title(panel)
        axes.set_xlabel("epoch")
        axes.set_ylabel(ylabel)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        if drawn:
            axes.legend()
        else:
            _note(axes, "no epochs yet" if not epochs else "no finite values (training diverged)")
    return _png(figure)


def confusion_matrix_png(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> bytes:
    """Counts as a heatmap with each count written in its cell; true classes down, predicted across."""
    n = len(labels)
    side = min(max(4.5, 0.6 * n + 2.5), 14.0)
    figure = Figure(figsize=(side + 1.2, side), layout="tight")
    axes = figure.subplots()
    axes.set_title(title)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if n == 0 or not matrix:
        axes.set_xticks([])
        axes.set_yticks([])
        _note(axes, "no classes")
        return _png(figure)
    image = axes.imshow(matrix, cmap="Blues", vmin=0, interpolation="nearest", aspect="equal")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="count")
    axes.set_xticks(range(n), labels=list(labels))
    axes.set_yticks(range(n), labels=list(labels))
    if max(len(label) for label in labels) > 3:
        # Long names such as "T-shirt/top" would overlap side by side.
        axes.tick_params(axis="x", labelrotation=45)
        for tick in axes.get_xticklabels():
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")
    highest = max((max(row) for row in matrix if row), default=0)
    fontsize = 11 if n <= 5 else 9 if n <= 12 else 7
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            # White on the dark half of the colour map, black on the light half.
            color = "white" if highest and count > highest / 2 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=color, fontsize=fontsize)
    return _png(figure)


Curve = Sequence[tuple[int, float | None]]


def _colors(count: int) -> list[str | tuple[float, float, float, float]]:
    if count <= 10:
        return [f"C{i}" for i in range(count)]
    cmap = colormaps["tab20" if count <= 20 else "turbo"]
    if count <= 20:
        return [cmap(i) for i in range(count)]
    return [cmap(i / (count - 1)) for i in range(count)]


def sweep_metric_png(curves: Mapping[str, Sequence[tuple[int, float | None]]], metric: str, title: str) -> bytes:
    """One curve of `metric` per experiment, labelled by what differs; None values are gaps."""
    figure = Figure(figsize=(12, 5), layout="tight")
    axes = figure.subplots()
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    drawn = 0
    for (label, points), color in zip(curves.items(), _colors(len(curves)), strict=True):
        if not points:
            continue
        epochs = [epoch for epoch, _value in points]
        values = _gapped([value for _epoch, value in points])
        axes.plot(epochs, values, marker="o", markersize=3.5, color=color, label=label)
        drawn += 1
    if drawn:
        # Outside the axes: a sweep's labels are long, and inside they would cover the curves.
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9 if drawn <= 12 else 8, frameon=False)
    if not any(_has_values([value for _epoch, value in points]) for points in curves.values()):
        _note(axes, f"no {metric} values yet")
    return _png(figure)


def mean_band(
    runs: Sequence[Sequence[tuple[int, float | None]]],
) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per epoch over the runs that have a finite value there: (epochs, mean, min, max); NaN where none has."""
    by_epoch: dict[int, list[float]] = {}
    for points in runs:
        for epoch, value in points:
            values = by_epoch.setdefault(epoch, [])
            if value is not None and math.isfinite(value):
                values.append(float(value))
    epochs = sorted(by_epoch)
    means = [math.fsum(by_epoch[e]) / len(by_epoch[e]) if by_epoch[e] else math.nan for e in epochs]
    lows = [min(by_epoch[e]) if by_epoch[e] else math.nan for e in epochs]
    highs = [max(by_epoch[e]) if by_epoch[e] else math.nan for e in epochs]
    return epochs, means, lows, highs


def sweep_band_png(
    groups: Mapping[str, Sequence[Sequence[tuple[int, float | None]]]], metric: str, title: str
) -> bytes:
    """Per configuration, the mean of `metric` over its runs with a min-max band; a single run is a plain line."""
    figure = Figure(figsize=(12, 5), layout="tight")
    axes = figure.subplots()
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    drawn = 0
    for (label, runs), color in zip(groups.items(), _colors(len(groups)), strict=True):
        runs = [points for points in runs if points]
        if not runs:
            continue
        epochs, means, lows, highs = mean_band(runs)
        if len(runs) > 1:
            # The band is the whole range of the runs (min to max), not a confidence interval: with a few
            # repeats it shows every run, where a +-std band would hide the outliers that matter here.
            axes.fill_between(epochs, lows, highs, color=color, alpha=0.2, linewidth=0)
            label = f"{label} (mean of {len(runs)}, band min-max)"
        axes.plot(epochs, means, marker="o", markersize=3.5, color=color, label=label)
        drawn += 1
    if drawn:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9 if drawn <= 12 else 8, frameon=False)
    if not any(_has_values([v for points in runs for _e, v in points]) for runs in groups.values()):
        _note(axes, f"no {metric} values yet")
    return _png(figure)
