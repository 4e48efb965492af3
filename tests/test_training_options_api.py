"""The training options through the API and the worker's writes: accepted and answered as resolved, refused with
a 422 that says the fix, and an early stop recorded in the experiment's summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import epochal.cli.experiments as cli_experiments
from epochal.cli import app as cli_app
from tests.test_api import WORKER_NAME, assert_unprocessable, epoch_result, evaluation_for, read, submit
from training.options import CosineDecay
from worker import jobs

OPTIONS: dict[str, Any] = {
    "optimizer": "adamw",
    "epochs": 6,
    "early_stopping": {"monitor": "val_accuracy", "patience": 2},
    "lr_schedule": {"type": "cosine", "warmup_epochs": 1, "alpha": 0.1},
    "clipnorm": 1.0,
    "label_smoothing": 0.1,
    "class_weight": {"7": 2.0, "0": 0.5},
}


def test_options_are_answered_as_resolved_and_reach_the_worker(client: TestClient) -> None:
    created = submit(client, **OPTIONS)
    answer = read(client, created["id"])
    assert {k: v for k, v in answer.items() if k not in ("queue_position", "estimated_start")} == {
        k: v for k, v in created.items() if k not in ("queue_position", "estimated_start")
    }
    assert answer["early_stopping"] == {"monitor": "val_accuracy", "patience": 2, "min_delta": 0.0}
    assert answer["lr_schedule"] == {"type": "cosine", "warmup_epochs": 1, "decay_epochs": 5, "alpha": 0.1}
    assert (answer["weight_decay"], answer["clipnorm"], answer["clipvalue"]) == (0.004, 1.0, None)
    assert (answer["label_smoothing"], answer["loss"]) == (0.1, "categorical_crossentropy")
    assert answer["class_weight"] == {"0": 0.5, "7": 2.0}
    assert answer["summary"]["stopped_early_at"] is None
    job = jobs.claim(created["id"], WORKER_NAME)
    assert job is not None
    assert isinstance(job.spec.lr_schedule, CosineDecay) and job.spec.lr_schedule.decay_epochs == 5
    assert job.spec.early_stopping is not None and job.spec.early_stopping.patience == 2


def test_an_experiment_without_options_answers_them_null(client: TestClient) -> None:
    answer = read(client, submit(client)["id"])
    options = ("early_stopping", "lr_schedule", "weight_decay", "clipnorm", "clipvalue", "label_smoothing")
    assert {name: answer[name] for name in (*options, "class_weight")} == dict.fromkeys((*options, "class_weight"))
    assert answer["loss"] == "sparse_categorical_crossentropy"


def test_bad_options_are_422_saying_what_to_send(client: TestClient) -> None:
    response = client.post(
        "/experiments", json={"dataset": "mnist", "label_smoothing": 0.1, "loss": "sparse_categorical_crossentropy"}
    )
    assert_unprocessable(
        response, "label_smoothing needs loss categorical_crossentropy", "use categorical_crossentropy"
    )
    response = client.post("/experiments", json={"dataset": "mnist", "lr_schedule": {"type": "triangle"}})
    assert_unprocessable(response, "lr_schedule", "'cosine'", "'plateau'")
    response = client.post("/experiments", json={"dataset": "cats_vs_dogs", "class_weight": {"horse": 1}})
    assert_unprocessable(response, "'horse' is no class of cats_vs_dogs", "cat, dog")
    assert client.get("/experiments").json()["total"] == 0  # nothing stored


def test_an_early_stop_is_recorded_in_the_summary(client: TestClient, tmp_path: Path) -> None:
    experiment_id = submit(client, epochs=5, early_stopping={"patience": 1})["id"]
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    for epoch in (1, 2):
        jobs.record_epoch(job, epoch_result(epoch))
    checkpoint = tmp_path / "best_model.h5"
    checkpoint.write_bytes(b"\x89HDF\r\n\x1a\n not a real network, nothing loads it")
    jobs.finish_succeeded(job, 2, 0.47, evaluation_for(job.spec.dataset), checkpoint, stopped_early_at=2)
    summary = read(client, experiment_id)["summary"]
    assert (summary["stopped_early_at"], summary["epochs_done"], summary["best_epoch"]) == (2, 2, 2)


def test_epochal_run_takes_a_schedule_inline_or_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bodies: list[dict[str, Any]] = []

    class Caught:
        def __enter__(self) -> Caught:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def submit(self, body: dict[str, Any]) -> dict[str, Any]:
            bodies.append(body)
            return {"id": 1, "status": "queued"}

    monkeypatch.setattr(cli_experiments, "connect", lambda ctx: Caught())
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("type: step\nevery_epochs: 2\n")
    options = ["--dataset", "mnist", "--class-weight", "balanced", "--early-stopping-patience", "2", "--json"]
    for given, sent in (
        ('{"type": "cosine", "warmup_epochs": 1}', {"type": "cosine", "warmup_epochs": 1}),
        (str(schedule), {"type": "step", "every_epochs": 2}),
    ):
        result = CliRunner().invoke(cli_app, ["run", "--lr-schedule", given, *options])
        assert result.exit_code == 0, result.output
        assert bodies[-1]["lr_schedule"] == sent
        assert (bodies[-1]["class_weight"], bodies[-1]["early_stopping"]) == ("balanced", {"patience": 2})
    result = CliRunner().invoke(cli_app, ["run", "--dataset", "mnist", "--lr-schedule", "{not json"])
    assert result.exit_code != 0 and "is not a JSON object" in result.output


def test_a_sweep_compares_schedules_one_configuration_each(client: TestClient) -> None:
    schedules = [{"type": "step", "every_epochs": 1, "factor": 0.5}, {"type": "cosine"}, {"type": "plateau"}]
    response = client.post(
        "/sweeps",
        json={"base": {"dataset": "mnist", "epochs": 3}, "grid": {"lr_schedule": schedules}, "repeats": 2},
    )
    assert response.status_code == 202, response.text
    sweep = client.get(f"/sweeps/{response.json()['id']}").json()
    assert [e["lr_schedule"]["type"] for e in sweep["experiments"]] == [
        "step",
        "step",
        "cosine",
        "cosine",
        "plateau",
        "plateau",
    ]
    assert len(sweep["configurations"]) == 3  # repeats together, schedules apart
    refused = client.post(
        "/sweeps", json={"base": {"dataset": "mnist"}, "grid": {"lr_schedule": [{"type": "cosine"}, {"type": "x"}]}}
    )
    assert refused.status_code == 422 and "lr_schedule" in refused.text


def test_each_epochs_learning_rate_is_stored_and_answered(client: TestClient) -> None:
    # The rate comes from the training process's optimizer (tests/test_training_options.py holds that it is the
    # schedule's); here: the worker stores what it is told, and an epoch recorded without one answers null.
    experiment_id = submit(client, epochs=3, learning_rate=0.01, lr_schedule={"type": "step", "every_epochs": 1})["id"]
    job = jobs.claim(experiment_id, WORKER_NAME)
    assert job is not None
    jobs.record_epoch(job, dataclasses.replace(epoch_result(1), learning_rate=0.01))
    jobs.record_epoch(job, dataclasses.replace(epoch_result(2), learning_rate=0.005))
    jobs.record_epoch(job, dataclasses.replace(epoch_result(3), learning_rate=None))
    rates = [row["learning_rate"] for row in client.get(f"/experiments/{experiment_id}/metrics").json()]
    assert rates == [0.01, 0.005, None]
