"""Sweeps over HTTP: grid expansion, refusal of bad grids with nothing created, the ranked comparison."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from training.results import EpochResult, EvaluationResult
from worker import jobs

OPTIMIZERS = ["sgd_nesterov", "adagrad", "rmsprop", "adadelta", "adam"]
HOMEWORK_VARIANTS = [
    {"head": {"units": 1, "activation": "sigmoid"}, "loss": "binary_crossentropy"},
    {"head": {"units": 1, "activation": "sigmoid"}, "loss": "mse"},
    {"head": {"units": 2, "activation": "softmax"}, "loss": "categorical_crossentropy"},
    {"head": {"units": 2, "activation": "softmax"}, "loss": "mse"},
    {"head": {"units": 1, "activation": "relu"}, "loss": "mse"},
]


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/sweeps", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/sweeps/{response.json()['id']}"
    result: dict[str, Any] = response.json()
    return result


def experiment_count(client: TestClient) -> int:
    return int(client.get("/experiments").json()["total"])


def test_an_optimizer_grid_creates_one_queued_experiment_each(client: TestClient) -> None:
    sweep = create(
        client, {"name": "optimizers", "base": {"dataset": "mnist", "epochs": 3}, "grid": {"optimizer": OPTIMIZERS}}
    )
    assert [e["optimizer"] for e in sweep["experiments"]] == OPTIMIZERS
    assert [e["name"] for e in sweep["experiments"]] == [f"optimizer={o}" for o in OPTIMIZERS]
    assert {e["status"] for e in sweep["experiments"]} == {"queued"}
    assert {e["sweep_id"] for e in sweep["experiments"]} == {sweep["id"]}
    assert all(e["epochs"] == 3 for e in sweep["experiments"])
    assert sweep["status_counts"] == {"queued": 5}
    assert sweep["finished"] is False
    assert client.get("/experiments", params={"sweep_id": sweep["id"]}).json()["total"] == 5


def test_head_and_loss_variants_cross_learning_rates(client: TestClient) -> None:
    sweep = create(
        client,
        {
            "base": {"dataset": "cats_vs_dogs"},
            "grid": {"variants": HOMEWORK_VARIANTS, "learning_rate": [0.001, 0.0001]},
        },
    )
    experiments = sweep["experiments"]
    assert len(experiments) == 10
    pairs = {(e["head"]["units"], e["head"]["activation"], e["loss"], e["learning_rate"]) for e in experiments}
    assert (1, "relu", "mse", 0.0001) in pairs
    assert (2, "softmax", "categorical_crossentropy", 0.001) in pairs
    assert len(pairs) == 10


def convnet(filters: int, dense_layers: int = 1) -> dict[str, Any]:
    return {
        "layers": [
            {"type": "Reshape", "target_shape": [28, 28, 1]},
            {"type": "Conv2D", "filters": filters, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {"type": "Flatten"},
            *[{"type": "Dense", "units": 16, "activation": "relu"} for _ in range(dense_layers)],
        ]
    }


def test_whole_networks_are_swept_as_variants_with_short_distinct_labels(client: TestClient) -> None:
    # A graph's labels once listed every layer's arguments, past the 200 characters of a name: a 422 for a valid
    # sweep. Two graphs differing only in an argument must still be told apart.
    big = convnet(8, dense_layers=40)
    variants = [{"network": "mlp"}, {"network": convnet(8)}, {"network": convnet(16)}, {"network": big}]
    sweep = create(client, {"base": {"dataset": "mnist"}, "grid": {"variants": variants, "learning_rate": [0.01]}})
    names = [e["name"] for e in sweep["experiments"]]
    assert names[0] == "network=mlp; learning_rate=0.01"
    assert names[1].startswith("network=graph ") and "(Reshape Conv2D MaxPooling2D Flatten Dense)" in names[1]
    assert len(set(names)) == 4 and all(len(name) <= 200 for name in names)
    assert "Dense x40" in names[3]
    assert [e["network"] == "mlp" for e in sweep["experiments"]] == [True, False, False, False]
    assert [e["network"]["layers"][1]["filters"] for e in sweep["experiments"][1:]] == [8, 16, 8]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"base": {"dataset": "mnist"}, "grid": {"optimizer": ["adam", "sgd", "lbfgs"]}}, "grid.optimizer[2]"),
        (
            {
                "base": {"dataset": "mnist"},
                "grid": {"variants": [{"loss": "mse"}, {"head": {"units": 3, "activation": "softmax"}}]},
            },
            "grid.variants[1]",
        ),
        ({"base": {"dataset": "mnist"}, "grid": {"colour": ["red"]}}, "grid.colour is not a spec field"),
        ({"base": {"dataset": "mnist"}, "grid": {"optimizer": []}}, "grid.optimizer is empty"),
        ({"base": {"dataset": "mnist"}, "grid": {}}, "the grid is empty"),
        ({"base": {"dataset": "mnist"}, "grid": {"seed": list(range(101))}}, "101 = 101 combinations"),
        ({"base": {"dataset": "mnist"}, "grid": {"seed": list(range(1001))}}, "at most 1000 per axis"),
        ({"base": {"dataset": "mnist"}, "grid": {f"x{i}": [1] for i in range(17)}}, "17 axes; at most 16"),
        ({"base": {}, "grid": {"optimizer": ["adam"]}}, "dataset"),
    ],
)
def test_an_invalid_grid_is_refused_naming_the_entry_and_creates_nothing(
    client: TestClient, body: dict[str, Any], words: str
) -> None:
    response = client.post("/sweeps", json=body)
    assert response.status_code == 422
    assert words in str(response.json())
    assert experiment_count(client) == 0
    assert client.get("/sweeps").json() == []


def finish(experiment_id: int, val_accuracies: list[float], test_accuracy: float, tmp_path: Path) -> None:
    job = jobs.claim(experiment_id, "w@h")
    assert job is not None
    for epoch, val_accuracy in enumerate(val_accuracies, start=1):
        jobs.record_epoch(
            job,
            EpochResult(epoch, 1.0 / epoch, val_accuracy - 0.01, 1.2 / epoch, val_accuracy, seconds=1.5),
        )
    best = max(range(len(val_accuracies)), key=lambda i: val_accuracies[i])
    checkpoint = tmp_path / f"{experiment_id}.h5"
    checkpoint.write_bytes(b"weights")
    evaluation = EvaluationResult(0.3, test_accuracy, ["0", "1"], [[1, 0], [0, 1]], {"accuracy": test_accuracy})
    jobs.finish_succeeded(job, best + 1, val_accuracies[best], evaluation, checkpoint)


def test_the_comparison_ranks_by_best_validation_accuracy(client: TestClient, tmp_path: Path) -> None:
    sweep = create(
        client, {"base": {"dataset": "mnist", "epochs": 3}, "grid": {"optimizer": ["sgd", "adam", "rmsprop"]}}
    )
    sgd, adam, rmsprop = (e["id"] for e in sweep["experiments"])
    finish(sgd, [0.5, 0.6, 0.55], 0.6, tmp_path)
    finish(adam, [0.8, 0.9, 0.85], 0.9, tmp_path)
    job = jobs.claim(rmsprop, "w@h")  # still running, no epochs yet
    assert job is not None

    table = client.get(f"/sweeps/{sweep['id']}").json()["comparison"]
    assert [row["experiment_id"] for row in table] == [adam, sgd, rmsprop]
    assert [row["rank"] for row in table] == [1, 2, None]
    best = table[0]
    assert (best["label"], best["optimizer"], best["best_epoch"]) == ("optimizer=adam", "adam", 2)
    assert best["best_val_accuracy"] == pytest.approx(0.9)
    assert best["final_val_accuracy"] == pytest.approx(0.85)
    assert best["best_accuracy"] == pytest.approx(0.89)
    assert best["final_loss"] == pytest.approx(1.0 / 3)
    assert best["best_val_loss"] == pytest.approx(0.4)
    assert best["test_accuracy"] == pytest.approx(0.9)
    assert best["training_seconds"] == pytest.approx(4.5)
    assert table[2]["status"] == "running"
    assert table[2]["best_val_accuracy"] is None
    assert client.get(f"/sweeps/{sweep['id']}").json()["status_counts"] == {"succeeded": 2, "running": 1}


def cancel(client: TestClient, experiment_id: int) -> None:
    response = client.post(f"/experiments/{experiment_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"


def test_cancelled_runs_are_counted_apart_from_failed_ones(client: TestClient, tmp_path: Path) -> None:
    sweep = create(
        client, {"base": {"dataset": "mnist", "epochs": 2}, "grid": {"optimizer": ["sgd", "adam"]}, "repeats": 2}
    )
    by_optimizer: dict[str, list[int]] = {}
    for experiment in sweep["experiments"]:
        by_optimizer.setdefault(experiment["optimizer"], []).append(experiment["id"])
    sgd_ok, sgd_cancelled = by_optimizer["sgd"]
    adam_failed, adam_cancelled = by_optimizer["adam"]
    finish(sgd_ok, [0.5, 0.6], 0.6, tmp_path)
    cancel(client, sgd_cancelled)
    job = jobs.claim(adam_failed, "w@h")
    assert job is not None
    jobs.finish_failed(job, "ValueError: the network diverged")
    cancel(client, adam_cancelled)

    body = client.get(f"/sweeps/{sweep['id']}").json()
    rows = {row["label"]: row for row in body["configurations"]}
    counts = {label: (r["succeeded"], r["unfinished"], r["failed"], r["cancelled"]) for label, r in rows.items()}
    assert counts == {"optimizer=sgd": (1, 0, 0, 1), "optimizer=adam": (0, 0, 1, 1)}
    assert rows["optimizer=sgd"]["best_val_accuracy"]["n"] == 1  # the cancelled run is not in the statistics
    assert (body["finished"], body["state"]) == (True, "partly_succeeded")


def test_a_sweep_whose_runs_were_all_cancelled_reads_cancelled_not_succeeded(client: TestClient) -> None:
    sweep = create(client, {"base": {"dataset": "mnist", "epochs": 2}, "grid": {"optimizer": ["sgd", "adam"]}})
    assert sweep["state"] == "running"  # queued
    for experiment in sweep["experiments"]:
        cancel(client, experiment["id"])
    body = client.get(f"/sweeps/{sweep['id']}").json()
    assert (body["finished"], body["state"]) == (True, "cancelled")
    assert [(r["failed"], r["cancelled"]) for r in body["configurations"]] == [(0, 1), (0, 1)]
    [listed] = [s for s in client.get("/sweeps").json() if s["id"] == sweep["id"]]
    assert listed["state"] == "cancelled"


def test_a_sweep_with_a_failure_and_no_success_reads_failed(client: TestClient) -> None:
    sweep = create(client, {"base": {"dataset": "mnist", "epochs": 2}, "grid": {"optimizer": ["sgd", "adam"]}})
    failing, cancelled = (e["id"] for e in sweep["experiments"])
    job = jobs.claim(failing, "w@h")
    assert job is not None
    assert client.get(f"/sweeps/{sweep['id']}").json()["state"] == "running"
    jobs.finish_failed(job, "ValueError: the network diverged")
    cancel(client, cancelled)
    assert client.get(f"/sweeps/{sweep['id']}").json()["state"] == "failed"


def test_unknown_sweep_is_404(client: TestClient) -> None:
    response = client.get("/sweeps/999")
    assert response.status_code == 404
    assert "sweep 999 does not exist" in response.json()["detail"]


def test_a_huge_grid_is_refused_from_its_axis_lengths_before_anything_is_expanded(client: TestClient) -> None:
    # 20^8 = 25.6 billion combinations: expanding them first would never answer. Counted, it is refused at once.
    axes = ["seed", "epochs", "batch_size", "learning_rate", "train_size", "validation_split", "optimizer", "loss"]
    body = {"base": {"dataset": "mnist"}, "grid": {axis: list(range(1, 21)) for axis in axes}}
    response = client.post("/sweeps", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"{' x '.join(['20'] * 8)} = {20**8} combinations" in detail
    assert "limit of 100 experiments per sweep (EPOCHAL_MAX_SWEEP_SIZE)" in detail
    assert experiment_count(client) == 0
    assert client.get("/sweeps").json() == []


def test_the_sweep_size_cap_is_a_setting(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from config import get_settings

    monkeypatch.setattr(get_settings(), "max_sweep_size", 4)
    refused = client.post("/sweeps", json={"base": {"dataset": "mnist"}, "grid": {"seed": [1, 2, 3, 4, 5]}})
    assert refused.status_code == 422
    assert "limit of 4 experiments" in refused.json()["detail"]
    assert experiment_count(client) == 0
    create(client, {"base": {"dataset": "mnist"}, "grid": {"seed": [1, 2, 3, 4]}})
    assert experiment_count(client) == 4


# --- paths into the network graph ----------------------------------------------------------------------------

CONVNET_GRAPH: dict[str, Any] = {
    "layers": [
        {"type": "Reshape", "target_shape": [28, 28, 1]},
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
        {"type": "Flatten"},
        {"type": "Dropout", "rate": 0.1},
    ]
}


def graph_sweep(grid: dict[str, list[Any]], network: Any = None) -> dict[str, Any]:
    return {"base": {"dataset": "mnist", "network": network or CONVNET_GRAPH}, "grid": grid}


def test_a_grid_path_sets_the_value_inside_the_network_graph(client: TestClient) -> None:
    sweep = create(client, graph_sweep({"network.layers.3.rate": [0.2, 0.5], "network.layers.1.filters": [16, 32]}))
    experiments = sweep["experiments"]
    settings = [(e["network"]["layers"][3]["rate"], e["network"]["layers"][1]["filters"]) for e in experiments]
    assert settings == [(0.2, 16), (0.2, 32), (0.5, 16), (0.5, 32)]
    assert experiments[0]["name"] == "network.layers.3.rate=0.2; network.layers.1.filters=16"
    # Only the path changes: the rest of each graph is the base's, and the base stays as it was sent.
    for experiment in experiments:
        layers = experiment["network"]["layers"]
        assert layers[0]["target_shape"] == [28, 28, 1] and layers[1]["kernel_size"] in (3, [3, 3])
    assert client.get(f"/sweeps/{sweep['id']}").json()["base"]["network"] == CONVNET_GRAPH
    # A layer's argument left to its default in the base can be set too (the last segment is a new key).
    padded = create(client, graph_sweep({"network.layers.1.padding": ["valid", "same"]}))
    assert [e["network"]["layers"][1]["padding"] for e in padded["experiments"]] == ["valid", "same"]
    # A path into a field that another axis of the same combination sets whole.
    whole = create(
        client,
        {"base": {"dataset": "mnist"}, "grid": {"network": [CONVNET_GRAPH], "network.layers.3.rate": [0.3]}},
    )
    assert whole["experiments"][0]["network"]["layers"][3]["rate"] == 0.3
    # A whole graph as an axis value is named by its layer types and a digest, not written out past the name's length.
    name = whole["experiments"][0]["name"]
    assert re.fullmatch(
        r"network=graph [0-9a-f]{8} \(Reshape Conv2D Flatten Dropout\); network.layers.3.rate=0.3", name
    )


@pytest.mark.parametrize(
    ("grid", "network", "words"),
    [
        (
            {"network.layers.9.rate": [0.2]},
            None,
            ["grid.network.layers.9.rate does not resolve", "segment '9'", "0 to 3"],
        ),
        ({"network.layers.x.rate": [0.2]}, None, ["segment 'x'", "a list of 4"]),
        ({"network.layers.\u00b2.rate": [0.2]}, None, ["segment '\u00b2'", "a list of 4"]),  # a digit, not an index
        ({"network.stack.0.rate": [0.2]}, None, ["segment 'stack'", "network has no 'stack'"]),
        (
            {"network.layers.0.target_shape.5": [2]},
            None,
            ["segment '5'", "network.layers.0.target_shape is a list of 3"],
        ),
        ({"network.layers.3.rate.low": [0.2]}, None, ["segment 'low'", "network.layers.3.rate is 0.1"]),
        ({"network.layers.0.filters": [16]}, "mlp", ["segment 'layers'", "network is 'mlp'", "GET /networks"]),
        ({"head.units": [2]}, None, ["grid.head.units does not resolve", "segment 'head'", "base spec has no head"]),
        ({"colour.layers.0": [2]}, None, ["grid.colour.layers.0 is not a spec field"]),
        ({"network..rate": [2]}, None, ["non-empty dict keys or list indexes"]),
        ({"network." + ".".join("a" * 8): [2]}, None, ["up to 7"]),
    ],
)
def test_a_grid_path_that_does_not_resolve_is_a_422_naming_the_axis_and_segment(
    client: TestClient, grid: dict[str, list[Any]], network: Any, words: list[str]
) -> None:
    response = client.post("/sweeps", json=graph_sweep(grid, network))
    assert response.status_code == 422, response.text
    for word in words:
        assert word in str(response.json()), (word, response.text)
    assert experiment_count(client) == 0 and client.get("/sweeps").json() == []


def test_a_grid_path_through_a_deeply_nested_base_is_a_422_not_a_crash(client: TestClient) -> None:
    # A path copies only what it goes through: nesting as deep as the JSON parser takes costs it nothing.
    depth = 900
    network = "[" * depth + "1" + "]" * depth
    body = f'{{"base": {{"dataset": "mnist", "network": {network}}}, "grid": {{"network.0.0.0": [2]}}}}'
    response = client.post("/sweeps", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


def test_a_bad_value_at_a_grid_path_is_a_422_naming_the_axis_value(client: TestClient) -> None:
    response = client.post("/sweeps", json=graph_sweep({"network.layers.3.rate": [0.2, 5.0]}))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "grid.network.layers.3.rate[1] (network.layers.3.rate=5.0) cannot run" in detail and "rate" in detail
    # A value that makes the graph not fit its input is the spec's 422 too, naming the layer.
    too_big = client.post("/sweeps", json=graph_sweep({"network.layers.1.kernel_size": [3, 64]}))
    assert too_big.status_code == 422 and "grid.network.layers.1.kernel_size[1]" in too_big.json()["detail"]
    unknown = client.post("/sweeps", json=graph_sweep({"network.layers.2.units": [4]}))  # Flatten takes no units
    assert unknown.status_code == 422 and "grid.network.layers.2.units[0]" in unknown.json()["detail"]
    assert experiment_count(client) == 0
