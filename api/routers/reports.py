"""Reports drawn from stored results: PNG plots and TensorBoard logdirs to download.

Nothing here needs the worker or TensorFlow: everything is derived from the epoch rows and the
evaluation in the database, so a report is available for as long as the experiment is.
"""

from __future__ import annotations

from collections.abc import Hashable
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Response

from api.http.auth import CurrentUser
from api.http.deps import SessionDep
from api.http.errors import ERROR_DESCRIPTIONS, ErrorRead, not_found, responses
from api.http.openapi import file_response
from api.http.params import ExperimentId, SweepId
from api.reports import plots
from api.reports.sweep_table import configuration_key
from api.reports.tensorboard_export import EpochScalars, Run, logdir_tarball, run_name
from domain.access import visible_evaluation, visible_experiment, visible_sweep
from models import EpochMetric, Experiment, Sweep
from models.base import as_utc
from models.specs import dataset_info_of, validation_of
from training.spec import Validation

router = APIRouter(tags=["reports"])

PNG = "image/png"
GZIP = "application/gzip"


class SweepMetric(StrEnum):
    """A per-epoch metric, named as in GET /experiments/{id}/metrics."""

    LOSS = "loss"
    ACCURACY = "accuracy"
    VAL_LOSS = "val_loss"
    VAL_ACCURACY = "val_accuracy"


def _png_responses(description: str, missing: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: file_response(description, PNG),
        **responses(422),
        404: {"model": ErrorRead, "description": f"{ERROR_DESCRIPTIONS[404]} {missing}"},
    }


def _png(content: bytes, filename: str) -> Response:
    return Response(content=content, media_type=PNG, headers={"Content-Disposition": f'inline; filename="{filename}"'})


def _describe(experiment: Experiment) -> str:
    name = f" ({experiment.name})" if experiment.name else ""
    return f"experiment {experiment.id}{name}: {experiment.dataset}, {experiment.network}, {experiment.optimizer}"


def _require_epochs(experiment: Experiment) -> list[EpochMetric]:
    if not experiment.metrics:
        raise not_found(
            f"experiment {experiment.id} has no finished epochs yet (it is {experiment.status}); "
            "its history is available once the first epoch is recorded"
        )
    return list(experiment.metrics)


def _run(experiment: Experiment, id_width: int = 0) -> Run:
    return Run(
        name=run_name(experiment.id, experiment.name, id_width),
        epochs=[
            EpochScalars(
                epoch=m.epoch,
                loss=m.loss,
                accuracy=m.accuracy,
                val_loss=m.val_loss,
                val_accuracy=m.val_accuracy,
                wall_time=as_utc(m.created_at).timestamp(),
            )
            for m in experiment.metrics
        ],
    )


def _tarball(content: bytes, filename: str) -> Response:
    return Response(
        content=content, media_type=GZIP, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


def _started_experiments(sweep: Sweep) -> list[Experiment]:
    """The sweep's experiments that have at least one epoch; 404 when none has, as there is nothing to draw."""
    started = [e for e in sweep.experiments if e.metrics]
    if not started:
        raise not_found(f"sweep {sweep.id} has no finished epochs yet; its reports are available once one is recorded")
    return started


TENSORBOARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: file_response("A logdir as .tar.gz: `mkdir tb && tar -xzf tb.tar.gz -C tb && tensorboard --logdir tb`.", GZIP),
    **responses(422),
    404: {"model": ErrorRead, "description": f"{ERROR_DESCRIPTIONS[404]} Or no finished epochs yet."},
}


@router.get(
    "/experiments/{experiment_id}/plots/history.png",
    response_class=Response,
    responses=_png_responses("Loss and accuracy per epoch, train and validation.", "No finished epochs yet."),
)
def plot_history(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> Response:
    """Loss and accuracy per epoch as a PNG; 404 until the first epoch is recorded. Diverged values are gaps."""
    experiment = visible_experiment(session, user, experiment_id)
    metrics = _require_epochs(experiment)
    series = {
        "loss": [m.loss for m in metrics],
        "accuracy": [m.accuracy for m in metrics],
        "val_loss": [m.val_loss for m in metrics],
        "val_accuracy": [m.val_accuracy for m in metrics],
    }
    content = plots.history_png([m.epoch for m in metrics], series, _describe(experiment))
    return _png(content, f"experiment-{experiment_id}-history.png")


def _test_split(experiment: Experiment) -> str:
    try:
        return dataset_info_of(experiment).test_split
    except LookupError:  # its dataset version was deleted since: the matrix stays readable
        return f"the test split of {experiment.dataset}@{experiment.dataset_version}"


@router.get(
    "/experiments/{experiment_id}/plots/confusion-matrix.png",
    response_class=Response,
    responses=_png_responses("The test confusion matrix as a heatmap.", "No evaluation (not succeeded)."),
)
def plot_confusion_matrix(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> Response:
    """The confusion matrix as a PNG heatmap: true classes down, predicted across; 404 until it succeeded."""
    evaluation = visible_evaluation(session, user, experiment_id)
    experiment = evaluation.experiment
    accuracy = f", accuracy {evaluation.test_accuracy:.4f}" if evaluation.test_accuracy is not None else ""
    title = f"{_describe(experiment)}\nconfusion matrix on {_test_split(experiment)}{accuracy}"
    content = plots.confusion_matrix_png(evaluation.labels, evaluation.confusion_matrix, title)
    return _png(content, f"experiment-{experiment_id}-confusion-matrix.png")


# "{metric}.png": Starlette escapes the literal ".png" in the route's pattern, so only a name ending in
# .png matches, and the name before it is validated against SweepMetric (422 otherwise).
@router.get(
    "/sweeps/{sweep_id}/plots/{metric}.png",
    response_class=Response,
    responses=_png_responses("One curve per experiment of the sweep.", "No finished epochs in the sweep yet."),
)
def plot_sweep_metric(sweep_id: SweepId, metric: SweepMetric, session: SessionDep, user: CurrentUser) -> Response:
    """One metric per epoch per configuration of a sweep: the mean of its repeats with a min-max band; 404 until any
    has an epoch."""
    sweep = visible_sweep(session, user, sweep_id)
    started = _started_experiments(sweep)
    groups: dict[tuple[Hashable, ...], list[Experiment]] = {}
    for experiment in started:
        groups.setdefault(configuration_key(experiment), []).append(experiment)
    curves = {
        _curve_label(runs): [[(m.epoch, getattr(m, metric.value)) for m in e.metrics] for e in runs]
        for runs in groups.values()
    }
    name = f" ({sweep.name})" if sweep.name else ""
    content = plots.sweep_band_png(curves, metric.value, f"sweep {sweep_id}{name}: {metric.value} per epoch")
    return _png(content, f"sweep-{sweep_id}-{metric.value}.png")


def _curve_label(runs: list[Experiment]) -> str:
    ids = ", ".join(str(e.id) for e in runs)
    what = f"exp {ids}" if len(runs) == 1 else f"exps {ids}"
    first = runs[0]
    selected = " [selected on test]" if validation_of(first) is Validation.TEST else ""
    return (f"{what}: {first.name}" if first.name else what) + selected


@router.get("/experiments/{experiment_id}/tensorboard", response_class=Response, responses=TENSORBOARD_RESPONSES)
def download_experiment_tensorboard(experiment_id: ExperimentId, session: SessionDep, user: CurrentUser) -> Response:
    """The history as a TensorBoard logdir (.tar.gz): one run, train and validation; 404 until an epoch is recorded."""
    experiment = visible_experiment(session, user, experiment_id)
    _require_epochs(experiment)
    return _tarball(logdir_tarball([_run(experiment)]), f"experiment-{experiment_id}-tensorboard.tar.gz")


@router.get("/sweeps/{sweep_id}/tensorboard", response_class=Response, responses=TENSORBOARD_RESPONSES)
def download_sweep_tensorboard(sweep_id: SweepId, session: SessionDep, user: CurrentUser) -> Response:
    """Every experiment of a sweep with epochs as one run each, in one logdir (.tar.gz), to compare in TensorBoard."""
    sweep = visible_sweep(session, user, sweep_id)
    started = _started_experiments(sweep)
    # Zero-padded ids, so the runs sort by id in a file listing as well as in TensorBoard.
    width = len(str(max(e.id for e in started)))
    return _tarball(logdir_tarball([_run(e, width) for e in started]), f"sweep-{sweep_id}-tensorboard.tar.gz")
