"""`epochal datasets ...`: upload a dataset (a folder of class folders, or an archive), follow its preparation, and
read what the service has: the built-ins, the public datasets and your own, each version with its classes."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from epochal.cli.context import connect, err, out, print_json
from epochal.cli.dataset_views import dataset_status, datasets_table, version_view, versions_table
from epochal.cli.packing import ARCHIVE_SUFFIXES, dataset_files, is_archive, pack
from epochal.client import Client, NotFound
from epochal.client.types import DatasetVersion

app = typer.Typer(
    help="Datasets: upload your own (class folders, or an .npz), follow their preparation, list them.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of tables, for scripts.")]
IMAGE_SIZE = re.compile(r"^(\d+)(?:x(\d+))?$")
REF = re.compile(r"^(?P<name>[^@]+)(?:@(?P<version>\d+))?$")


class FitChoice(StrEnum):
    RESIZE = "resize"
    CROP = "crop"
    PAD = "pad"


class ColorChoice(StrEnum):
    GRAYSCALE = "grayscale"
    RGB = "rgb"


def image_size(text: str | None) -> tuple[int, int] | None:
    """HEIGHTxWIDTH, or one side for a square; the API holds the sides to its bounds."""
    if text is None:
        return None
    match = IMAGE_SIZE.match(text.strip().lower())
    if match is None:
        raise typer.BadParameter(f"{text!r}: give HEIGHTxWIDTH (e.g. 64x48) or one side for a square (64)")
    return int(match[1]), int(match[2] or match[1])


def dataset_ref(text: str) -> tuple[str, int | None]:
    """NAME or NAME@VERSION."""
    match = REF.match(text)
    if match is None or match["version"] == "0":
        raise typer.BadParameter(f"{text!r}: give NAME or NAME@VERSION (e.g. flowers@2)")
    return match["name"], None if match["version"] is None else int(match["version"])


def _me(client: Client) -> int | None:
    return client.me()["id"]


@contextmanager
def _bar(description: str, total: int, of_bytes: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, drawn only on a terminal (a pipe or a CI log gets none of it); yields the function
    that moves it, `(done, total)`: bytes sent and their rate, or files packed."""
    counts: list[ProgressColumn] = [DownloadColumn(), TransferSpeedColumn()] if of_bytes else [MofNCompleteColumn()]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *counts,
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    ) as bars:
        task = bars.add_task(description, total=total)
        yield lambda done, all_of: bars.update(task, completed=done, total=all_of)


def _upload(client: Client, source: Path, options: dict[str, Any]) -> DatasetVersion:
    with _bar(f"uploading {source.name}", source.stat().st_size, of_bytes=True) as moved:
        return client.upload_dataset(source, progress=moved, **options)


def _push_folder(client: Client, folder: Path, options: dict[str, Any]) -> DatasetVersion:
    files = dataset_files(folder)
    if not files:
        raise typer.BadParameter(
            f"{folder} holds no files to upload (one folder per class, images in each)", param_hint="SOURCE"
        )
    with tempfile.TemporaryDirectory(prefix="epochal-push-") as workdir:
        archive = Path(workdir) / f"{folder.resolve().name or 'dataset'}.zip"
        with _bar(f"packing {folder.name}", len(files), of_bytes=False) as moved:
            pack(files, archive, moved)
        return _upload(client, archive, options)


def _report(version: DatasetVersion, as_json: bool) -> None:
    """The settled version: its classes, counts, shape and hash, or its errors (and exit code 1)."""
    if as_json:
        print_json(version)
    else:
        out.print(version_view(version))
    if version["status"] == "failed":
        err.print(f"{version['name']}@{version['version']}: failed, nothing stored; see its errors", markup=False)
        raise typer.Exit(1)


@app.command("push")
def push(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            help="A folder of class folders (optionally under train/ and test/), zipped on the fly; or a "
            f"{', '.join(ARCHIVE_SUFFIXES)} file, sent as it is.",
            exists=True,
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option(help="The dataset's name: a new upload under yours is its next version.")],
    public: Annotated[bool, typer.Option("--public", help="Every user may see and use it (else you and admins).")] = (
        False
    ),
    size: Annotated[
        str | None,
        typer.Option("--image-size", help="HxW (or one side for a square); default: the most common size."),
    ] = None,
    fit: Annotated[FitChoice | None, typer.Option(help="How an image meets the size; default resize.")] = None,
    color_mode: Annotated[
        ColorChoice | None, typer.Option(help="Default: grayscale when every image is, otherwise rgb.")
    ] = None,
    test_fraction: Annotated[
        float | None,
        typer.Option(help="Share held out for testing when there is no test/ split (default 0.2).", min=0, max=1),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="The hold-out's seed (default 42).", min=0)] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the preparation; exit 1 if it fails.")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks while waiting.", min=0.1)] = 1.0,
    as_json: JsonFlag = False,
) -> None:
    """Upload a dataset (POST /datasets); with --wait, print its classes, counts, shape and hash, or its errors."""
    if not source.is_dir() and not is_archive(source):
        raise typer.BadParameter(
            f"{source}: give a folder, or a {', '.join(ARCHIVE_SUFFIXES)} file", param_hint="SOURCE"
        )
    options: dict[str, Any] = {
        "name": name,
        "visibility": "public" if public else "private",
        "image_size": image_size(size),
        "fit": None if fit is None else fit.value,
        "color_mode": None if color_mode is None else color_mode.value,
        "test_fraction": test_fraction,
        "seed": seed,
    }
    with connect(ctx) as client:
        version = _push_folder(client, source, options) if source.is_dir() else _upload(client, source, options)
        where = f"{version['name']}@{version['version']}"
        if not wait:
            if as_json:
                print_json(version)
            else:
                line = Text(f"{where}: ").append_text(dataset_status(version["status"]))
                out.print(line.append(f" (follow it: epochal datasets show {where})"))
            return
        err.print(f"uploaded {where}, preparing it", markup=False)
        version = client.wait_dataset(version["name"], version["version"], poll_s=poll)
    _report(version, as_json)


@app.command("ls")
def list_datasets(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every dataset version you may use: the built-ins, the public ones and your own."""
    with connect(ctx) as client:
        datasets = client.datasets()
        me = None if as_json else _me(client)
    if as_json:
        print_json(datasets)
        return
    out.print(datasets_table(datasets, me))


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (every version, the latest in full) or NAME@VERSION.")],
    as_json: JsonFlag = False,
) -> None:
    """A dataset's versions, and one version in full: classes and counts per split, shape, fit, hash, errors."""
    name, number = dataset_ref(ref)
    with connect(ctx) as client:
        detail = client.dataset(name)
        me = None if as_json else _me(client)
    versions = detail["versions"]
    if number is not None:
        versions = [v for v in versions if v["version"] == number]
        if not versions:
            raise NotFound(404, f"dataset {name!r} has no version {number}; `epochal datasets show {name}` lists them")
    if as_json:
        print_json(versions[0] if number is not None else detail)
        return
    out.print(versions_table(name, versions, me))
    out.print(version_view(versions[-1]))


@app.command("rm")
def remove(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION: the version to delete.")],
) -> None:
    """Delete a version of your dataset (an admin: anyone's); its number is never given again."""
    name, number = dataset_ref(ref)
    if number is None:
        raise typer.BadParameter(f"{ref!r}: say which version, as NAME@VERSION", param_hint="REF")
    with connect(ctx) as client:
        client.delete_dataset_version(name, number)
    out.print(f"{name}@{number}: deleted")
