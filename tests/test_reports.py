"""Reports: PNG plots and TensorBoard logdirs, drawn from stored results.

Experiments are taken through the worker's own database functions (worker.jobs), so no training is
needed; the TensorBoard exports are read back with TensorBoard's own event reader.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.reports import plots
from api.reports.tensorboard_export import EpochScalars, Run, logdir_tarball, run_name, write_logdir
from tests.support import ROOT
from training.results import EpochResult, EvaluationResult
from training.spec import DATASETS, Dataset
from worker import jobs

WORKER_NAME = "reports-test-worker@host"
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# TensorBoard tag -> (train field, validation field), as Keras' TensorBoard callback names them.
TAGS = {"epoch_loss": ("loss", "val_loss"), "epoch_accuracy": ("accuracy", "val_accuracy")}


# --- helpers -----------------------------------------------------------------------------------------


def epoch_row(epoch: int, offset: float = 0.0, **overrides: float | None) -> EpochResult:
    """A distinct row per epoch, with values that float32 cannot hold exactly (1/3, 1/7, ...)."""
    values: dict[str, Any] = {
        "loss": 1.0 / (epoch + 2) + offset,
        "accuracy": 0.5 + epoch / 7 / 10 + offset,
        "val_loss": 1.5 / (epoch + 2) + offset,
        "val_accuracy": 0.45 + epoch / 9 / 10 + offset,
    }
    values.update(overrides)
    return EpochResult(epoch=epoch, seconds=1.0 + epoch / 10, **values)


def evaluation(matrix: list[list[int]] | None = None, dataset: Dataset = Dataset.MNIST) -> EvaluationResult:
    labels = list(DATASETS[dataset].class_names)
    n = len(labels)
    matrix = matrix or [[(5 * i + 3 * j) % 7 + (90 if i == j else 0) for j in range(n)] for i in range(n)]
    return EvaluationResult(
        test_loss=0.25, test_accuracy=0.9, labels=labels, confusion_matrix=matrix, classification_report={}
    )


def run_experiment(
    experiment_id: int, tmp_path: Path, rows: list[EpochResult], result: EvaluationResult | None = None
) -> jobs.ClaimedJob:
    """Claim, record `rows`, and finish succeeded with `result` when given (else it stays running)."""
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    for row in rows:
        jobs.record_epoch(job, row)
    if result is not None:
        checkpoint = tmp_path / f"checkpoint-{experiment_id}.h5"
        checkpoint.write_bytes(b"not a network; nothing loads it")
        jobs.finish_succeeded(job, rows[-1].epoch, rows[-1].val_accuracy or 0.0, result, checkpoint)
    return job


def submit(client: TestClient, **fields: Any) -> int:
    response = client.post("/experiments", json={"dataset": "mnist", "epochs": 3, **fields})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def create_sweep(client: TestClient) -> tuple[int, list[dict[str, Any]]]:
    body = {"base": {"dataset": "mnist", "epochs": 2}, "grid": {"optimizer": ["adam", "sgd"]}}
    response = client.post("/sweeps", json=body)
    assert response.status_code == 202, response.text
    return int(response.json()["id"]), response.json()["experiments"]


def png_size(content: bytes) -> tuple[int, int]:
    """Width and height of a PNG that decodes completely; fails on anything else."""
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    image.load()
    return image.size


def assert_png_response(response: Any, min_width: int = 400, min_height: int = 300) -> tuple[int, int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    width, height = png_size(response.content)
    assert min_width <= width <= 2000 and min_height <= height <= 2000, (width, height)
    return width, height


def assert_404(response: Any, *words: str) -> None:
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, f"{word!r} not in {detail!r}"


def extract(content: bytes, into: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        for member in tar.getmembers():
            assert not member.name.startswith("/") and ".." not in Path(member.name).parts, member.name
        tar.extractall(into, filter="data")
    return into


def read_scalars(run_split: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per tag, read with TensorBoard's own event reader, every event kept."""
    from tensorboard.backend.event_processing import plugin_event_accumulator, tag_types
    from tensorboard.util import tensor_util

    accumulator = plugin_event_accumulator.EventAccumulator(str(run_split), size_guidance={tag_types.TENSORS: 0})
    accumulator.Reload()
    scalars = {}
    for tag in accumulator.Tags()[tag_types.TENSORS]:
        # The scalars dashboard shows a tag only when its metadata names the scalars plugin.
        assert accumulator.SummaryMetadata(tag).plugin_data.plugin_name == "scalars", tag
        scalars[tag] = [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in accumulator.Tensors(tag)]
    return scalars


def expected_scalars(metrics: list[dict[str, Any]], split: int) -> dict[str, list[tuple[int, float]]]:
    """What the stored history says a split should hold: float32 values, diverged (null) epochs left out."""
    return {
        tag: [(m["epoch"], float(np.float32(m[fields[split]]))) for m in metrics if m[fields[split]] is not None]
        for tag, fields in TAGS.items()
    }


def assert_logdir_matches(client: TestClient, run_dir: Path, experiment_id: int) -> None:
    """Every stored epoch, train and validation, is in the run exactly (as float32, as TensorBoard stores it)."""
    metrics = client.get(f"/experiments/{experiment_id}/metrics").json()
    assert metrics, "the experiment has no history to compare"
    assert sorted(p.name for p in run_dir.iterdir()) == ["train", "validation"]
    for split, name in enumerate(("train", "validation")):
        assert read_scalars(run_dir / name) == expected_scalars(metrics, split), (run_dir.name, name)


# --- api/reports/plots.py ------------------------------------------------------------------------------------


def test_history_png_with_gaps() -> None:
    epochs = [1, 2, 3, 4, 5]
    series: dict[str, list[float | None]] = {
        "loss": [1.0, None, 0.5, None, 0.3],  # epoch 3 stands alone between two gaps
        "accuracy": [0.5, 0.6, None, 0.8, 0.85],
        "val_loss": [1.2, 0.9, 0.7, 0.6, None],
        "val_accuracy": [None, None, None, None, None],  # all diverged
    }
    width, height = png_size(plots.history_png(epochs, series, "gaps"))
    assert width > height  # two panels side by side


@pytest.mark.parametrize(
    ("epochs", "series"),
    [([], {}), ([1, 2], {}), ([1], {m: [None] for m in METRICS}), ([7], {m: [0.5] for m in METRICS})],
    ids=["nothing", "no-series", "all-none", "one-epoch"],
)
def test_history_png_of_little_or_nothing(epochs: list[int], series: dict[str, list[float | None]]) -> None:
    png_size(plots.history_png(epochs, series, "little"))


def test_confusion_matrix_png_depends_on_the_matrix_and_only_on_its_inputs() -> None:
    labels = list(DATASETS[Dataset.FASHION_MNIST].class_names)  # long names: rotated tick labels
    first = [[100 if i == j else i + j for j in range(10)] for i in range(10)]
    second = [row[:] for row in first]
    second[3][5] = 77
    png = plots.confusion_matrix_png(labels, first, "cm")
    assert png == plots.confusion_matrix_png(labels, first, "cm")
    assert png != plots.confusion_matrix_png(labels, second, "cm")
    width, height = png_size(png)
    assert width >= 500 and height >= 500


@pytest.mark.parametrize(
    ("labels", "matrix"),
    [([], []), (["cat", "dog"], [[0, 0], [0, 0]]), (["only"], [[5]])],
    ids=["empty", "all-zero", "one-class"],
)
def test_confusion_matrix_png_edge_cases(labels: list[str], matrix: list[list[int]]) -> None:
    png_size(plots.confusion_matrix_png(labels, matrix, "edge"))


@pytest.mark.parametrize(
    "curves",
    [
        {},
        {"exp 1": []},
        {"exp 1: optimizer=adam": [(1, 0.5), (2, None), (3, 0.7)], "exp 2: optimizer=sgd": [(1, None), (2, None)]},
        {f"exp {i}: learning_rate=0.{i:03d}": [(1, 1.0 / (i + 1)), (2, 0.5 / (i + 1))] for i in range(25)},
    ],
    ids=["no-curves", "empty-curve", "gaps", "many"],
)
def test_sweep_metric_png(curves: dict[str, list[tuple[int, float | None]]]) -> None:
    png_size(plots.sweep_metric_png(curves, "val_accuracy", "sweep"))


# --- api/reports/tensorboard_export.py ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("experiment_id", "label", "width", "expected"),
    [
        (7, None, 0, "exp-7"),
        (7, None, 3, "exp-007"),
        (12, "optimizer=adam", 0, "exp-12_optimizer=adam"),
        (12, "optimizer=adam; learning_rate=0.01", 0, "exp-12_optimizer=adam,learning_rate=0.01"),
        (3, "head=10 softmax, loss=mse; optimizer=sgd", 0, "exp-3_head=10_softmax,loss=mse,optimizer=sgd"),
        (4, " ../../etc/passwd ", 0, "exp-4_etc_passwd"),
        (5, "ünïcode / names", 0, "exp-5_unicode_names"),
        (6, ";;  //", 0, "exp-6"),
    ],
)
def test_run_names_are_safe_folder_names(experiment_id: int, label: str | None, width: int, expected: str) -> None:
    assert run_name(experiment_id, label, width) == expected


def test_tarball_is_built_in_a_temporary_folder_that_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    run = Run("exp-1", [EpochScalars(1, 0.5, 0.6, 0.7, 0.8, wall_time=1_700_000_000.0)])
    content = logdir_tarball([run])
    assert list(scratch.iterdir()) == []
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        names = tar.getnames()
        assert all(m.uname == "" and m.uid == 0 for m in tar.getmembers())
    assert names[:3] == ["exp-1", "exp-1/train", "exp-1/train/events.out.tfevents.1700000000.epochal"]
    assert "exp-1/validation/events.out.tfevents.1700000000.epochal" in names


def test_writing_event_files_does_not_import_tensorflow(tmp_path: Path) -> None:
    # In a fresh interpreter: this one has likely imported TensorFlow already.
    code = (
        "import sys, pathlib\n"
        "from api.reports.tensorboard_export import EpochScalars, Run, logdir_tarball, write_logdir\n"
        "import api.reports.plots\n"
        "run = Run('exp-1', [EpochScalars(1, 0.5, 0.6, 0.7, 0.8, 1.0)])\n"
        f"write_logdir([run], pathlib.Path({str(tmp_path)!r}))\n"
        "logdir_tarball([run])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.rglob("events.out.tfevents.*"))) == 2


def test_event_files_hold_float32_values_and_leave_out_diverged_ones(tmp_path: Path) -> None:
    epochs = [
        EpochScalars(1, 1 / 3, 0.5, 0.4, None, wall_time=100.0),
        EpochScalars(2, None, None, None, None, wall_time=200.0),
        EpochScalars(3, 0.1, 0.9, 0.2, 0.8, wall_time=300.0),
    ]
    write_logdir([Run("exp-1", epochs)], tmp_path)
    f32 = lambda value: float(np.float32(value))  # noqa: E731
    assert read_scalars(tmp_path / "exp-1" / "train") == {
        "epoch_loss": [(1, f32(1 / 3)), (3, f32(0.1))],
        "epoch_accuracy": [(1, 0.5), (3, f32(0.9))],
    }
    assert read_scalars(tmp_path / "exp-1" / "validation") == {
        "epoch_loss": [(1, f32(0.4)), (3, f32(0.2))],
        "epoch_accuracy": [(3, f32(0.8))],
    }


# --- plots over HTTP ---------------------------------------------------------------------------------


def test_history_png_of_an_experiment(client: TestClient, tmp_path: Path) -> None:
    experiment_id = submit(client, name="adam run")
    rows = [epoch_row(1), epoch_row(2, val_loss=None), epoch_row(3, loss=None, accuracy=None)]
    run_experiment(experiment_id, tmp_path, rows)
    response = client.get(f"/experiments/{experiment_id}/plots/history.png")
    width, height = assert_png_response(response)
    assert width > height
    assert f"experiment-{experiment_id}-history.png" in response.headers["content-disposition"]


def test_history_png_is_404_until_the_first_epoch(client: TestClient) -> None:
    experiment_id = submit(client)
    assert_404(client.get(f"/experiments/{experiment_id}/plots/history.png"), "no finished epochs yet", "queued")
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    assert_404(client.get(f"/experiments/{experiment_id}/plots/history.png"), "no finished epochs yet", "running")
    jobs.record_epoch(job, epoch_row(1))
    assert_png_response(client.get(f"/experiments/{experiment_id}/plots/history.png"))


@pytest.mark.parametrize(
    "path",
    [
        "/experiments/{id}/plots/history.png",
        "/experiments/{id}/plots/confusion-matrix.png",
        "/experiments/{id}/tensorboard",
    ],
)
def test_reports_of_a_missing_experiment_are_404(client: TestClient, path: str) -> None:
    missing = submit(client) + 1000
    assert_404(client.get(path.format(id=missing)), f"experiment {missing} does not exist")


def test_confusion_matrix_png_of_a_succeeded_experiment(client: TestClient, tmp_path: Path) -> None:
    experiment_id = submit(client, dataset="fashion_mnist")
    run_experiment(experiment_id, tmp_path, [epoch_row(1)], evaluation(dataset=Dataset.FASHION_MNIST))
    response = client.get(f"/experiments/{experiment_id}/plots/confusion-matrix.png")
    assert_png_response(response, min_width=500, min_height=500)
    assert f"experiment-{experiment_id}-confusion-matrix.png" in response.headers["content-disposition"]


def test_confusion_matrix_png_follows_the_stored_matrix(client: TestClient, tmp_path: Path) -> None:
    first, second = submit(client, dataset="cats_vs_dogs"), submit(client, dataset="cats_vs_dogs")
    run_experiment(first, tmp_path, [epoch_row(1)], evaluation([[40, 10], [5, 45]], Dataset.CATS_VS_DOGS))
    run_experiment(second, tmp_path, [epoch_row(1)], evaluation([[10, 40], [45, 5]], Dataset.CATS_VS_DOGS))
    a = client.get(f"/experiments/{first}/plots/confusion-matrix.png")
    b = client.get(f"/experiments/{second}/plots/confusion-matrix.png")
    assert_png_response(a)
    assert_png_response(b)
    assert a.content != b.content
    # The same stored evaluation draws the same picture each time.
    assert client.get(f"/experiments/{first}/plots/confusion-matrix.png").content == a.content


def test_confusion_matrix_png_is_404_without_an_evaluation(client: TestClient, tmp_path: Path) -> None:
    experiment_id = submit(client)
    run_experiment(experiment_id, tmp_path, [epoch_row(1)])  # running: epochs, but no evaluation yet
    assert_404(client.get(f"/experiments/{experiment_id}/plots/confusion-matrix.png"), "has no evaluation", "running")


@pytest.mark.parametrize("metric", METRICS)
def test_sweep_plot_of_each_metric(client: TestClient, tmp_path: Path, metric: str) -> None:
    sweep_id, experiments = create_sweep(client)
    adam, sgd = (e["id"] for e in experiments)
    run_experiment(adam, tmp_path, [epoch_row(1), epoch_row(2, val_loss=None)], evaluation())
    run_experiment(sgd, tmp_path, [epoch_row(1, offset=0.05)])  # still running, one epoch in
    response = client.get(f"/sweeps/{sweep_id}/plots/{metric}.png")
    assert_png_response(response)
    assert f"sweep-{sweep_id}-{metric}.png" in response.headers["content-disposition"]


def test_sweep_plot_with_one_experiment_started(client: TestClient, tmp_path: Path) -> None:
    sweep_id, experiments = create_sweep(client)
    run_experiment(experiments[1]["id"], tmp_path, [epoch_row(1)])
    assert_png_response(client.get(f"/sweeps/{sweep_id}/plots/val_accuracy.png"))


def test_sweep_plot_of_an_unknown_metric_is_422(client: TestClient) -> None:
    sweep_id, _experiments = create_sweep(client)
    response = client.get(f"/sweeps/{sweep_id}/plots/f1_score.png")
    assert response.status_code == 422, response.text
    assert "metric" in response.json()["message"]
    # Without the .png suffix there is no such route at all.
    assert client.get(f"/sweeps/{sweep_id}/plots/loss").status_code == 404


def test_sweep_reports_are_404_for_a_missing_sweep_or_one_without_epochs(client: TestClient) -> None:
    sweep_id, _experiments = create_sweep(client)
    for path in ("plots/loss.png", "tensorboard"):
        assert_404(client.get(f"/sweeps/{sweep_id}/{path}"), f"sweep {sweep_id} has no finished epochs yet")
        assert_404(client.get(f"/sweeps/{sweep_id + 1000}/{path}"), f"sweep {sweep_id + 1000} does not exist")


def test_report_endpoints_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/experiments/{experiment_id}/plots/history.png",
        "/experiments/{experiment_id}/plots/confusion-matrix.png",
        "/sweeps/{sweep_id}/plots/{metric}.png",
    ):
        assert "image/png" in paths[path]["get"]["responses"]["200"]["content"], path
        assert paths[path]["get"]["tags"] == ["reports"]
    for path in ("/experiments/{experiment_id}/tensorboard", "/sweeps/{sweep_id}/tensorboard"):
        assert "application/gzip" in paths[path]["get"]["responses"]["200"]["content"], path


# --- TensorBoard over HTTP ---------------------------------------------------------------------------


def test_experiment_tensorboard_logdir_holds_the_stored_history(client: TestClient, tmp_path: Path) -> None:
    experiment_id = submit(client)
    rows = [epoch_row(1), epoch_row(2, val_loss=None, loss=None), epoch_row(3)]
    run_experiment(experiment_id, tmp_path, rows, evaluation())
    response = client.get(f"/experiments/{experiment_id}/tensorboard")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="experiment-{experiment_id}-tensorboard.tar.gz"'
    logdir = extract(response.content, tmp_path / "tb")
    assert [p.name for p in logdir.iterdir()] == [f"exp-{experiment_id}"]
    assert_logdir_matches(client, logdir / f"exp-{experiment_id}", experiment_id)
    # The diverged epoch is a gap, not a number.
    assert [step for step, _ in read_scalars(logdir / f"exp-{experiment_id}" / "train")["epoch_loss"]] == [1, 3]


def test_experiment_tensorboard_is_404_until_the_first_epoch(client: TestClient) -> None:
    experiment_id = submit(client)
    assert_404(client.get(f"/experiments/{experiment_id}/tensorboard"), "no finished epochs yet")


def test_sweep_tensorboard_logdir_has_one_run_per_experiment(client: TestClient, tmp_path: Path) -> None:
    sweep_id, experiments = create_sweep(client)
    adam, sgd = (e["id"] for e in experiments)
    run_experiment(adam, tmp_path, [epoch_row(1), epoch_row(2)], evaluation())
    job = run_experiment(sgd, tmp_path, [epoch_row(1, offset=0.1), epoch_row(2, offset=0.1, val_accuracy=None)])
    jobs.finish_failed(job, "FloatingPointError: diverged")
    response = client.get(f"/sweeps/{sweep_id}/tensorboard")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    assert f'filename="sweep-{sweep_id}-tensorboard.tar.gz"' in response.headers["content-disposition"]
    logdir = extract(response.content, tmp_path / "tb")
    runs = sorted(p.name for p in logdir.iterdir())
    width = len(str(max(adam, sgd)))
    assert runs == [f"exp-{adam:0{width}d}_optimizer=adam", f"exp-{sgd:0{width}d}_optimizer=sgd"]
    for run, experiment_id in zip(runs, (adam, sgd), strict=True):
        assert_logdir_matches(client, logdir / run, experiment_id)


def test_sweep_tensorboard_leaves_out_experiments_without_epochs(client: TestClient, tmp_path: Path) -> None:
    sweep_id, experiments = create_sweep(client)
    sgd = experiments[1]["id"]
    run_experiment(sgd, tmp_path, [epoch_row(1)])
    logdir = extract(client.get(f"/sweeps/{sweep_id}/tensorboard").content, tmp_path / "tb")
    assert [p.name for p in logdir.iterdir()] == [run_name(sgd, "optimizer=sgd")]
    assert_logdir_matches(client, logdir / run_name(sgd, "optimizer=sgd"), sgd)
