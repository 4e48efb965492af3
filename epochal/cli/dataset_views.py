"""Rich renderables for datasets: the list, a dataset's versions, and one version's classes, counts and errors."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from epochal.cli.render import fmt, size_in_bytes
from epochal.client.types import Dataset, DatasetVersion

STATUS_STYLE = {"processing": "yellow", "ready": "green", "duplicate": "cyan", "failed": "red"}
CLASSES_SHOWN = 6  # names in a list's cell; `show` has them all


def dataset_status(status: str) -> Text:
    return Text(status, style=f"bold {STATUS_STYLE.get(status, '')}")


def shape(dims: Sequence[int] | None) -> str:
    return "x".join(map(str, dims)) if dims else "-"


def owner(builtin: bool, owner_id: int | None, me: int | None) -> str:
    if builtin:
        return "built-in"
    return "you" if owner_id == me else f"user {owner_id}"


def classes_cell(names: Sequence[str] | None) -> str:
    if not names:
        return "-"
    shown = ", ".join(names[:CLASSES_SHOWN]) + (", …" if len(names) > CLASSES_SHOWN else "")
    return f"{len(names)}: {shown}"


def datasets_table(datasets: Sequence[Dataset], me: int | None) -> Table:
    table = Table("name", "version", "status", "owner", "classes", "images", "shape", title="datasets")
    for d in datasets:
        table.add_row(
            d["name"],
            str(d["version"]),
            dataset_status(d["status"]),
            f"{owner(d['builtin'], d['owner_id'], me)}, {d['visibility']}",
            classes_cell(d["class_names"]),
            fmt(d.get("images")),
            shape(d["input_shape"]),
        )
    return table


def versions_table(name: str, versions: Sequence[DatasetVersion], me: int | None) -> Table:
    table = Table("version", "status", "owner", "classes", "images", "shape", "fit", "sha256", "created", title=name)
    for v in versions:
        status = dataset_status(v["status"])
        if v["duplicate_of"] is not None:
            status.append(f" of {v['duplicate_of']}", style="cyan")
        table.add_row(
            str(v["version"]),
            status,
            f"{owner(v['builtin'], v['owner_id'], me)}, {v['visibility']}",
            classes_cell(v["class_names"]),
            fmt(v["images"]),
            shape(v["input_shape"]),
            v["fit"] or "-",
            (v["content_sha256"] or "-")[:12],
            v["created_at"][:19].replace("T", " "),
        )
    return table


def counts_table(version: DatasetVersion) -> Table | None:
    """Images per class of each split, with the totals; None before it is prepared."""
    counts = version["counts"]
    if not counts:
        return None
    splits = [split for split in ("train", "test") if split in counts] + sorted(set(counts) - {"train", "test"})
    table = Table("class", *splits, "total", title="images per class", title_justify="left")
    for column in table.columns[1:]:
        column.justify = "right"
    for name in version["class_names"] or sorted({c for per_class in counts.values() for c in per_class}):
        row = [counts[split].get(name, 0) for split in splits]
        table.add_row(name, *map(str, row), str(sum(row)))
    totals = [sum(counts[split].values()) for split in splits]
    table.add_row(Text("all", style="bold"), *map(str, totals), str(sum(totals)), end_section=True)
    return table


def facts_table(version: DatasetVersion) -> Table:
    """What preparing it decided and found: shape, fit, colour, the test split, sizes, hashes, what was asked."""
    table = Table(show_header=False, box=None, title=f"{version['name']}@{version['version']}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str | Text]] = [("status", dataset_status(version["status"]))]
    if version["duplicate_of"] is not None:
        rows.append(("duplicate of", f"version {version['duplicate_of']} (the same content: nothing new stored)"))
    if version["input_shape"]:
        rows.append(("input shape", shape(version["input_shape"])))
        rows.append(("fit", f"{version['fit'] or '-'}, colour {version['color_mode'] or '-'}"))
    if version["held_out"] is not None:
        test = (
            f"held out of the upload: {version['test_fraction']:g} (seed {version['seed']})"
            if version["held_out"]
            else "the upload's own test split"
        )
        rows.append(("test split", test))
    if version["source_format"]:
        rows.append(("format", version["source_format"]))
    if version["upload_bytes"] is not None:
        rows.append(("uploaded", size_in_bytes(version["upload_bytes"])))
    if version["size_bytes"] is not None:
        rows.append(("arrays", size_in_bytes(version["size_bytes"])))
    if version["content_sha256"]:
        rows.append(("content sha256", version["content_sha256"]))
    if version["options"]:
        rows.append(("asked", ", ".join(f"{key}={value}" for key, value in version["options"].items())))
    for name, value in rows:
        table.add_row(name, value)
    return table


def errors_table(version: DatasetVersion) -> Table | None:
    if not version["errors"]:
        return None
    table = Table("entry", "reason", title="errors", title_justify="left", title_style="bold red")
    for problem in version["errors"]:
        table.add_row(problem["entry"], problem["reason"])
    return table


def version_view(version: DatasetVersion) -> RenderableType:
    parts: list[RenderableType] = [facts_table(version)]
    parts += [t for t in (counts_table(version), errors_table(version)) if t is not None]
    return Group(*parts)
