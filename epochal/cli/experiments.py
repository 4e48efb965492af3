"""Commands on experiments: run, ls, show, predict, download, cancel, retry."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, get_type_hints

import typer

from epochal.cli.context import connect, err, out, print_json, read_document
from epochal.cli.live import follow_experiment
from epochal.cli.render import (
    confusion_matrix_table,
    experiments_table,
    fmt,
    metrics_table,
    report_table,
    standing,
    status_text,
    summary_table,
)
from epochal.cli.spec_options import choices, request_body, with_spec_options
from epochal.client import Client, Conflict, NotFound
from epochal.client.types import Evaluation, Experiment, ExperimentRequest, Prediction, Status

MAX_BATCH = 64  # the API's limit on images in one batch request

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of tables, for scripts.")]
ExperimentId = Annotated[int, typer.Argument(help="The experiment's id.", min=1)]
Poll = Annotated[float, typer.Option(help="Seconds between checks while watching.", min=0.1)]


def _cancel_on_interrupt(client: Client, experiment_id: int) -> NoReturn:
    """Ctrl-C stops watching, not the job, unless the person says so."""
    err.print()
    if typer.confirm(f"Stop watching. Cancel experiment {experiment_id} too?", default=False, err=True):
        experiment = client.cancel(experiment_id)
        err.print(f"experiment {experiment_id}: {experiment['status']}, cancel requested")
    else:
        err.print(f"experiment {experiment_id} goes on; `epochal show {experiment_id}` to look again")
    raise typer.Exit(130)


def watch_to_end(client: Client, experiment_id: int, poll_s: float, as_json: bool) -> None:
    """Follow the experiment until it ends, then every epoch in a table; exit 0 when it succeeded, 1 otherwise."""
    progress = err if as_json else out  # with --json, stdout is kept for the final body alone
    try:
        last = follow_experiment(client, experiment_id, progress, poll_s)
    except KeyboardInterrupt:
        _cancel_on_interrupt(client, experiment_id)
    final = last.experiment
    if last.epochs:
        progress.print(metrics_table(last.epochs))
    if as_json:
        print_json(final)
    else:
        out.print(summary_table(final))
    raise typer.Exit(0 if final["status"] == "succeeded" else 1)


def spec_to_clone(experiment: Experiment) -> dict[str, Any]:
    """The request that queues `experiment` again: its fields that are the spec's (GET /experiments/{id} answers
    each as it trained, defaults filled in), without those left unset."""
    fields = get_type_hints(ExperimentRequest)
    return {field: value for field, value in experiment.items() if field in fields and value is not None}


@with_spec_options
def run(
    ctx: typer.Context,
    spec_options: dict[str, Any],
    spec: Annotated[
        Path | None, typer.Option(help="A JSON or YAML file with the spec; options given here override it.")
    ] = None,
    clone: Annotated[
        int | None,
        typer.Option("--from", help="Clone this experiment: its spec, with the options given here over it.", min=1),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow it live; exit 0 only if it succeeded.")] = False,
    poll: Poll = 1.0,
    as_json: JsonFlag = False,
) -> None:
    """Submit an experiment (POST /experiments). The API checks the spec: a bad one is refused with its reason.

    --network takes a preset's name, or a JSON or YAML file holding a graph (`epochal networks check FILE` first).
    """
    if spec is not None and clone is not None:
        raise typer.BadParameter("give --spec or --from, not both", param_hint="--from")
    with connect(ctx) as client:
        base = spec_to_clone(client.experiment(clone)) if clone is not None else read_document(spec) if spec else {}
        body = request_body(spec_options, base)
        experiment = client.submit(body)
        if not watch:
            if as_json:
                print_json(experiment)
            else:
                if experiment["status"] == "queued":  # the submission's answer has no position: the read works it out
                    experiment = client.experiment(experiment["id"])
                where = f", {place}" if (place := standing(experiment)) else ""
                follow = f"  (follow it: epochal watch {experiment['id']})"
                out.print(f"experiment {experiment['id']}: ", status_text(experiment["status"]), where, follow, sep="")
            return
        if as_json:  # stdout is kept for the final JSON alone
            err.print(f"submitted experiment {experiment['id']}")
        watch_to_end(client, experiment["id"], poll, as_json)


def watch(ctx: typer.Context, experiment_id: ExperimentId, poll: Poll = 1.0, as_json: JsonFlag = False) -> None:
    """Follow an experiment live until it ends; exit 0 only if it succeeded."""
    with connect(ctx) as client:
        watch_to_end(client, experiment_id, poll, as_json)


def ls(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help=f"{choices(Status)}.")] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    optimizer: Annotated[str | None, typer.Option()] = None,
    sweep: Annotated[int | None, typer.Option(help="Only this sweep's experiments.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (the API allows up to 500).")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many of the newest first.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List your experiments, newest first."""
    with connect(ctx) as client:
        page = client.experiments(
            status=status, dataset=dataset, optimizer=optimizer, sweep_id=sweep, limit=limit, offset=offset
        )
        if as_json:
            print_json(page)
            return
        items = page["items"]
    shown = f"{offset + 1}-{offset + len(items)}" if items else "none"
    out.print(experiments_table(items, title=f"experiments {shown} of {page['total']}"))


def _evaluation(client: Client, experiment: Experiment) -> Evaluation | None:
    if experiment["status"] != "succeeded":
        return None
    try:
        return client.evaluation(experiment["id"])
    except (NotFound, Conflict):  # succeeded but evaluated by an older version, or not stored: nothing to show
        return None


def show(ctx: typer.Context, experiment_id: ExperimentId, as_json: JsonFlag = False) -> None:
    """An experiment: summary, metrics per epoch, and once it succeeded its confusion matrix and report."""
    with connect(ctx) as client:
        experiment = client.experiment(experiment_id)
        metrics = client.metrics(experiment_id)
        evaluation = _evaluation(client, experiment)
    if as_json:
        print_json({"experiment": experiment, "metrics": metrics, "evaluation": evaluation})
        return
    out.print(summary_table(experiment))
    if metrics:
        out.print(metrics_table(metrics))
    if evaluation:
        loss, accuracy = fmt(evaluation["test_loss"]), fmt(evaluation["test_accuracy"])
        out.print(f"test loss [bold]{loss}[/], test accuracy [bold]{accuracy}[/]")
        out.print(confusion_matrix_table(evaluation["confusion_matrix"]))
        out.print(report_table(evaluation["classification_report"], evaluation["confusion_matrix"]["labels"]))


def _predict(client: Client, experiment_id: int | None, dataset: str | None, images: list[Path]) -> list[Prediction]:
    if len(images) == 1:  # the single-image route: also served by an API without the batch routes
        if experiment_id is not None:
            return [client.predict(experiment_id, images[0])]
        return [client.predict_best(str(dataset), images[0])]
    predictions: list[Prediction] = []
    for start in range(0, len(images), MAX_BATCH):
        chunk = images[start : start + MAX_BATCH]
        if experiment_id is not None:
            predictions += client.predict_batch(experiment_id, chunk)
        else:
            predictions += client.predict_batch_best(str(dataset), chunk)
    return predictions


def predict(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(help="ID IMAGE... (or only IMAGE... with --dataset).")],
    dataset: Annotated[
        str | None, typer.Option(help="Use your best succeeded experiment on this dataset instead of an ID.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Classify images with an experiment's best checkpoint, or with your best one on a dataset."""
    if dataset is None:
        if not targets or not targets[0].isdigit():
            raise typer.BadParameter("give an experiment ID before the images, or --dataset NAME")
        experiment_id: int | None = int(targets[0])
        images = [Path(p) for p in targets[1:]]
    else:
        experiment_id, images = None, [Path(p) for p in targets]
    if not images:
        raise typer.BadParameter("give at least one image")
    with connect(ctx) as client:
        predictions = _predict(client, experiment_id, dataset, images)
    if as_json:
        print_json([{"image": str(image), **p} for image, p in zip(images, predictions, strict=True)])
        return
    for image, p in zip(images, predictions, strict=True):
        confidence = (p["probabilities"] or {}).get(p["label"])
        shown = f" ({confidence:.1%})" if confidence is not None else ""
        out.print(f"{image}: [bold]{p['label']}[/]{shown}  experiment {p['experiment_id']}")


class Format(StrEnum):
    H5 = "h5"
    KERAS = "keras"
    SAVEDMODEL = "savedmodel"
    ONNX = "onnx"


# The names the API gives each export (its Content-Disposition), for the default output path.
EXPORT_NAMES = {
    Format.H5: "best_model.h5",
    Format.KERAS: "best_model.keras",
    Format.SAVEDMODEL: "best_model_savedmodel.zip",
    Format.ONNX: "best_model.onnx",
}


def download(
    ctx: typer.Context,
    experiment_id: ExperimentId,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write it.")] = None,
    name: Annotated[str, typer.Option(help="Which artifact (see `epochal show --json`).")] = "best_model.h5",
    format: Annotated[
        Format | None,
        typer.Option(
            "--format",
            help="The checkpoint as h5, keras (.keras), savedmodel (a zip TF Serving serves) or onnx; "
            "made on the server on the first request. Without it, the artifact --name.",
        ),
    ] = None,
) -> None:
    """Download an experiment's artifact, by default its best checkpoint, or the checkpoint in a --format."""
    with connect(ctx) as client:
        if format is None:
            target = output or Path(f"experiment-{experiment_id}-{name}")
            client.download_to(experiment_id, target, name)
        else:
            target = output or Path(f"experiment-{experiment_id}-{EXPORT_NAMES[format]}")
            client.export_to(experiment_id, target, format.value)
    out.print(f"wrote {target} ({target.stat().st_size:,} bytes)")


def cancel(ctx: typer.Context, experiment_id: ExperimentId, as_json: JsonFlag = False) -> None:
    """Cancel an experiment: a queued one never starts, a running one stops after its current epoch."""
    with connect(ctx) as client:
        experiment = client.cancel(experiment_id)
    if as_json:
        print_json(experiment)
    else:
        out.print(f"experiment {experiment_id}: ", status_text(experiment["status"]), " (cancel requested)")


def retry(ctx: typer.Context, experiment_id: ExperimentId, as_json: JsonFlag = False) -> None:
    """Queue a failed or cancelled experiment again, from scratch."""
    with connect(ctx) as client:
        experiment = client.retry(experiment_id)
    if as_json:
        print_json(experiment)
    else:
        out.print(f"experiment {experiment_id}: ", status_text(experiment["status"]))


def register(app: typer.Typer) -> None:
    for command in (run, watch, ls, show, predict, download, cancel, retry):
        app.command()(command)
