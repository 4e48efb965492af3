"""Honest comparisons: a held-out validation split, repeats with recorded seeds, and the statistics of the table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from scipy import stats as scipy_stats

from training import stats
from training.data import LabelledData, held_out_positions, load_arrays, load_splits, split_training
from training.results import EpochResult, EvaluationResult
from training.spec import MAX_REPEATS, Dataset, ExperimentSpec, Validation, repeat_seed
from worker import jobs

# --- the held-out split -------------------------------------------------------------------------------------------


def spec(**fields: Any) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"dataset": "mnist", **fields})


def imbalanced(count_per_class: list[int], seed: int = 0) -> LabelledData:
    """Labelled data whose inputs are their own index (so membership is easy to check), classes shuffled."""
    labels = np.concatenate([np.full(n, label) for label, n in enumerate(count_per_class)])
    labels = np.random.default_rng(seed).permutation(labels)
    return LabelledData(np.arange(len(labels)), labels.astype("int64"))


def test_validation_is_held_out_by_default_and_the_test_split_only_when_asked() -> None:
    default = spec()
    assert (default.validation, default.validation_split) == (Validation.HELD_OUT, 0.1)
    assert spec(validation_split=0.25).validation_split == 0.25
    course = spec(validation="test")
    assert (course.validation, course.validation_split) == (Validation.TEST, None)
    with pytest.raises(ValidationError, match="validation_split holds out training data"):
        spec(validation="test", validation_split=0.2)


def test_the_held_out_split_is_stratified_by_class() -> None:
    data = imbalanced([500, 300, 200])
    train, held = split_training(data, spec(validation_split=0.1))
    assert held is not None
    # Exactly the class proportions of the whole: 10% of each class.
    assert np.bincount(held.labels).tolist() == [50, 30, 20]
    assert np.bincount(train.labels).tolist() == [450, 270, 180]


def test_uneven_shares_go_to_the_largest_remainders_and_add_up_to_the_fraction() -> None:
    labels = np.array([0] * 7 + [1] * 5 + [2] * 3)  # 15 examples, 20% = 3: exact shares 1.4, 1.0, 0.6
    held = held_out_positions(labels, 0.2)
    assert len(held) == 3
    assert np.bincount(labels[held], minlength=3).tolist() == [1, 1, 1]
    # The first members of each class in the given order, returned in position order.
    assert held.tolist() == [0, 7, 12]


def test_the_held_out_split_is_disjoint_from_training_and_covers_the_capped_pool() -> None:
    data = imbalanced([120, 80])
    train, held = split_training(data, spec(validation_split=0.2, train_size=150, seed=7))
    assert held is not None
    train_ids, held_ids = set(train.inputs.tolist()), set(held.inputs.tolist())
    assert not train_ids & held_ids
    assert len(train_ids) + len(held_ids) == 150
    assert len(held_ids) == 30
    # The pool is the seed's permutation capped at train_size; training and validation split exactly it.
    pool = set(np.random.default_rng(7).permutation(200)[:150].tolist())
    assert train_ids | held_ids == pool


def test_the_held_out_split_is_reproducible_from_the_seed_and_changes_with_it() -> None:
    data = imbalanced([300, 300])
    first = split_training(data, spec(seed=3))[1]
    again = split_training(data, spec(seed=3))[1]
    other = split_training(data, spec(seed=4))[1]
    assert first is not None and again is not None and other is not None
    assert first.inputs.tolist() == again.inputs.tolist()
    assert set(first.inputs.tolist()) != set(other.inputs.tolist())


def test_load_splits_validates_on_training_images_unless_the_test_split_is_asked_for(data_dir: Path) -> None:
    train_raw, test_raw = load_arrays(Dataset(spec().dataset), data_dir)
    held = load_splits(spec(train_size=200, batch_size=50), data_dir)
    assert (held.train_count, held.validation_count) == (180, 20)
    assert held.validation is not held.test
    images = np.concatenate([x.numpy() for x, _y in held.validation]).astype("uint8")
    # Each validation image is the training image the split names, not a test image.
    _train, expected = split_training(train_raw, spec(train_size=200))
    assert expected is not None
    assert np.array_equal(images, expected.inputs)
    test_first = test_raw.inputs[: len(images)]
    assert not np.array_equal(images, test_first)

    course = load_splits(spec(train_size=200, batch_size=50, validation="test"), data_dir)
    assert course.validation is course.test
    assert (course.train_count, course.validation_count) == (200, len(test_raw))


# --- statistics on fixed inputs --------------------------------------------------------------------------------------


def test_summary_mean_std_and_t_interval_by_hand() -> None:
    summary = stats.summarize([0.8, 0.9, 1.0])
    assert summary.n == 3
    assert summary.mean == pytest.approx(0.9)
    assert summary.std == pytest.approx(0.1)
    # t(0.975, 2 df) = 4.302652729911275; half width = t x std / sqrt(3).
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert (summary.ci_low, summary.ci_high) == (pytest.approx(0.9 - half), pytest.approx(0.9 + half))
    low, high = scipy_stats.t.interval(0.95, 2, loc=0.9, scale=scipy_stats.sem([0.8, 0.9, 1.0]))
    assert (summary.ci_low, summary.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_summary_of_one_or_no_value_has_no_spread() -> None:
    assert stats.summarize([0.7]) == stats.Summary(1, 0.7, None, None, None)
    assert stats.summarize([]) == stats.Summary(0, None, None, None, None)


def test_welch_by_hand_and_against_scipy() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0]
    result = stats.welch(a, b)
    assert result is not None
    # Means 3 and 6, variances 2.5 and 10: t = -3 / sqrt(0.5 + 2), df = 2.5^2 / (0.5^2 / 4 + 2^2 / 4).
    assert result.statistic == pytest.approx(-3 / math.sqrt(2.5))
    assert result.df == pytest.approx(6.25 / (0.0625 + 1.0))
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(3 / math.sqrt(2.5), 6.25 / 1.0625))
    assert result.p_value == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert result.p_value > 0.05 and result.distinguishable is False

    clear = stats.welch([0.97, 0.98, 0.975], [0.78, 0.80, 0.79])
    assert clear is not None and clear.p_value < 0.05 and clear.distinguishable is True


def test_welch_needs_two_values_a_side_and_handles_no_spread() -> None:
    assert stats.welch([0.9], [0.8, 0.85]) is None
    same = stats.welch([0.5, 0.5], [0.5, 0.5, 0.5])
    assert same is not None and (same.p_value, same.distinguishable, same.statistic) == (1.0, False, None)
    apart = stats.welch([0.5, 0.5], [0.6, 0.6])
    assert apart is not None and apart.distinguishable is True


@pytest.mark.parametrize(
    ("accuracy", "counts", "collapsed"),
    [
        (0.5, [500, 500], True),  # one class always: exactly chance
        (0.514, [500, 500], True),  # within 1.5 points
        (0.52, [500, 500], False),
        (0.895, [900, 100], True),  # the majority class always
        (0.49, [900, 100], True),  # a coin: within 1.5 points of 1/2
        (0.75, [900, 100], False),
        (0.1135, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], True),  # MNIST test: all "1"
        (0.98, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], False),
    ],
)
def test_collapse_is_accuracy_at_chance(accuracy: float, counts: list[int], collapsed: bool) -> None:
    assert stats.is_collapsed(accuracy, counts) is collapsed


def test_repeat_seeds_are_distinct_deterministic_and_keep_the_base_for_the_first() -> None:
    seeds = [repeat_seed(42, i) for i in range(MAX_REPEATS)]
    assert seeds[0] == 42
    assert len(set(seeds)) == MAX_REPEATS
    assert seeds == [repeat_seed(42, i) for i in range(MAX_REPEATS)]
    assert all(0 <= s < 2**31 for s in [*seeds, repeat_seed(2**31 - 1, MAX_REPEATS - 1)])


# --- repeats and the configuration table over HTTP ------------------------------------------------------------------


def create_sweep(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/sweeps", json=body)
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


def finish(experiment_id: int, best_val: float, test_accuracy: float, matrix: list[list[int]], tmp_path: Path) -> None:
    job = jobs.claim(experiment_id, "w@h")
    assert job is not None
    jobs.record_split(job, 90, 10)
    jobs.record_epoch(job, EpochResult(1, 1.0, best_val - 0.1, 1.1, best_val - 0.05, seconds=1.0))
    jobs.record_epoch(job, EpochResult(2, 0.5, best_val, 0.6, best_val, seconds=1.0))
    checkpoint = tmp_path / f"{experiment_id}.h5"
    checkpoint.write_bytes(b"weights")
    evaluation = EvaluationResult(0.3, test_accuracy, ["cat", "dog"], matrix, {"accuracy": test_accuracy})
    jobs.finish_succeeded(job, 2, best_val, evaluation, checkpoint)


def test_a_sweep_with_repeats_records_distinct_seeds_on_every_row(client: TestClient) -> None:
    sweep = create_sweep(
        client,
        {"base": {"dataset": "mnist", "seed": 7}, "grid": {"optimizer": ["sgd", "adam"]}, "repeats": 3},
    )
    experiments = sweep["experiments"]
    assert len(experiments) == 6
    assert sweep["repeats"] == 3
    for optimizer in ("sgd", "adam"):
        runs = [e for e in experiments if e["optimizer"] == optimizer]
        assert [e["repeat"] for e in runs] == [0, 1, 2]
        assert [e["seed"] for e in runs] == [repeat_seed(7, i) for i in range(3)]
        assert {e["base_seed"] for e in runs} == {7}
        assert len({e["seed"] for e in runs}) == 3
    assert {e["validation"] for e in experiments} == {"held_out"}
    assert {e["validation_split"] for e in experiments} == {0.1}
    configurations = client.get(f"/sweeps/{sweep['id']}").json()["configurations"]
    assert sorted(len(c["experiment_ids"]) for c in configurations) == [3, 3]
    assert all(c["unfinished"] == 3 and c["rank"] is None for c in configurations)


def test_repeats_count_in_the_sweep_size_cap(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from config import get_settings

    monkeypatch.setattr(get_settings(), "max_sweep_size", 5)
    refused = client.post(
        "/sweeps", json={"base": {"dataset": "mnist"}, "grid": {"optimizer": ["sgd", "adam"]}, "repeats": 3}
    )
    assert refused.status_code == 422
    assert "2 x 3 repeats = 6 combinations" in refused.json()["detail"]
    assert client.get("/experiments").json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"base": {"dataset": "mnist", "repeats": 3}, "grid": {"optimizer": ["adam"]}}, "next to base and grid"),
        ({"base": {"dataset": "mnist"}, "grid": {"repeats": [1, 2]}}, "grid.repeats is not a spec field"),
        ({"base": {"dataset": "mnist"}, "grid": {"optimizer": ["adam"]}, "repeats": MAX_REPEATS + 1}, "repeats"),
        ({"base": {"dataset": "mnist"}, "grid": {"optimizer": ["adam"]}, "repeats": 0}, "repeats"),
    ],
)
def test_misplaced_or_out_of_range_repeats_are_refused(client: TestClient, body: dict[str, Any], words: str) -> None:
    response = client.post("/sweeps", json=body)
    assert response.status_code == 422
    assert words in str(response.json())
    assert client.get("/experiments").json()["total"] == 0


def test_one_experiment_with_repeats_forms_a_sweep_of_one_configuration(client: TestClient) -> None:
    response = client.post("/experiments", json={"dataset": "mnist", "name": "adam x3", "repeats": 3})
    assert response.status_code == 202, response.text
    first = response.json()
    assert first["repeat"] == 0 and first["seed"] == 42 and first["sweep_id"] is not None
    sweep = client.get(f"/sweeps/{first['sweep_id']}").json()
    assert [e["seed"] for e in sweep["experiments"]] == [repeat_seed(42, i) for i in range(3)]
    assert [c["experiment_ids"] for c in sweep["configurations"]] == [[e["id"] for e in sweep["experiments"]]]
    # Without repeats, nothing changes: one run, no sweep.
    single = client.post("/experiments", json={"dataset": "mnist"}).json()
    assert (single["sweep_id"], single["repeat"], single["seed"], single["base_seed"]) == (None, 0, 42, 42)


def test_the_worker_records_the_split_sizes_and_the_read_says_how_it_selected(
    client: TestClient, tmp_path: Path
) -> None:
    held = client.post("/experiments", json={"dataset": "mnist"}).json()
    course = client.post("/experiments", json={"dataset": "mnist", "validation": "test"}).json()
    assert held["selected_on"] == "held-out validation" and held["train_count"] is None
    finish(held["id"], 0.9, 0.88, [[45, 5], [7, 43]], tmp_path)
    body = client.get(f"/experiments/{held['id']}").json()
    assert (body["validation"], body["train_count"], body["validation_count"]) == ("held_out", 90, 10)
    assert body["selected_on"] == "held-out validation (10 examples)"
    assert client.get(f"/experiments/{course['id']}").json()["selected_on"] == "selected on test"


def test_a_superseded_attempt_cannot_record_split_sizes(client: TestClient) -> None:
    experiment_id = client.post("/experiments", json={"dataset": "mnist"}).json()["id"]
    job = jobs.claim(experiment_id, "w@h")
    assert job is not None
    stale = jobs.ClaimedJob(job.experiment_id, job.attempt - 1, job.queue, job.spec, None)
    with pytest.raises(jobs.Superseded):
        jobs.record_split(stale, 1, 1)
    assert client.get(f"/experiments/{experiment_id}").json()["train_count"] is None


BALANCED = [[50, 0], [0, 50]]


def matrix_for(accuracy: float) -> list[list[int]]:
    right = round(accuracy * 100)
    return [[50, 0], [100 - right, right - 50]] if right >= 50 else [[right, 50 - right], [50, 0]]


def test_the_configuration_table_aggregates_repeats_and_tests_neighbours(client: TestClient, tmp_path: Path) -> None:
    sweep = create_sweep(
        client,
        {
            "base": {"dataset": "cats_vs_dogs"},
            "grid": {
                "variants": [
                    {"head": {"units": 1, "activation": "sigmoid"}, "loss": "binary_crossentropy"},
                    {"head": {"units": 2, "activation": "softmax"}, "loss": "categorical_crossentropy"},
                    {"head": {"units": 1, "activation": "relu"}, "loss": "mse"},
                ]
            },
            "repeats": 3,
        },
    )
    by_label: dict[str, list[int]] = {}
    for e in sweep["experiments"]:
        by_label.setdefault(e["name"], []).append(e["id"])
    sigmoid, softmax, relu = by_label.values()
    val = {"sigmoid": [0.76, 0.74, 0.75], "softmax": [0.73, 0.75, 0.74], "relu": [0.50, 0.71, 0.50]}
    test = {"sigmoid": [0.75, 0.73, 0.74], "softmax": [0.72, 0.74, 0.73], "relu": [0.50, 0.70, 0.50]}
    for name, ids in (("sigmoid", sigmoid), ("softmax", softmax), ("relu", relu)):
        for experiment_id, v, t in zip(ids, val[name], test[name], strict=True):
            finish(experiment_id, v, t, matrix_for(t), tmp_path)

    body = client.get(f"/sweeps/{sweep['id']}").json()
    assert body["statistics"]["test"] == stats.WELCH_METHOD
    assert "1.5 points" in body["statistics"]["collapse"]
    rows = body["configurations"]
    assert [r["experiment_ids"] for r in rows] == [sigmoid, softmax, relu]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    first, second, third = rows
    for row, name in ((first, "sigmoid"), (second, "softmax"), (third, "relu")):
        for metric, values in (("best_val_accuracy", val[name]), ("test_accuracy", test[name])):
            cell = row[metric]
            low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy_stats.sem(values))
            assert cell["n"] == 3
            assert cell["mean"] == pytest.approx(np.mean(values))
            assert cell["std"] == pytest.approx(np.std(values, ddof=1))
            assert (cell["ci95_low"], cell["ci95_high"]) == (pytest.approx(low), pytest.approx(high))
        assert row["validation"] == "held_out" and row["selected_on"] == "held-out validation"
        assert row["seeds"] == [repeat_seed(42, i) for i in range(3)]
    # Two of the relu runs sit at 0.50 on a balanced test split: collapsed; the third learned.
    assert [r["collapsed"] for r in rows] == [0, 0, 2]
    assert third["chance"] == pytest.approx(0.5)
    # sigmoid vs softmax: 0.75 vs 0.74 with a spread of 0.01 is no difference; softmax vs relu is not either,
    # because one relu run learned (the spread is wide), although two of three collapsed.
    expected = scipy_stats.ttest_ind(val["sigmoid"], val["softmax"], equal_var=False)
    assert first["vs_next"]["p_value"] == pytest.approx(expected.pvalue)
    assert first["vs_next"]["statistic"] == pytest.approx(expected.statistic)
    assert first["vs_next"]["distinguishable"] is False
    assert first["vs_next"]["next_label"] == second["label"]
    assert first["vs_next"]["method"] == stats.WELCH_METHOD
    second_p = scipy_stats.ttest_ind(val["softmax"], val["relu"], equal_var=False).pvalue
    assert second["vs_next"]["p_value"] == pytest.approx(second_p)
    assert second_p > 0.05 and second["vs_next"]["distinguishable"] is False
    assert second["test_vs_next"]["metric"] == "test_accuracy"
    assert third["vs_next"] is None
    per_run = {r["experiment_id"]: r for r in body["comparison"]}
    assert [per_run[i]["collapsed"] for i in relu] == [True, False, True]


def test_selected_on_test_is_labelled_in_the_table(client: TestClient, tmp_path: Path) -> None:
    sweep = create_sweep(
        client, {"base": {"dataset": "cats_vs_dogs"}, "grid": {"validation": ["held_out", "test"]}, "repeats": 2}
    )
    for e in sweep["experiments"]:
        finish(e["id"], 0.8 if e["validation"] == "test" else 0.7, 0.7, matrix_for(0.7), tmp_path)
    body = client.get(f"/sweeps/{sweep['id']}").json()
    labels = {r["validation"]: r["selected_on"] for r in body["configurations"]}
    assert labels == {"held_out": "held-out validation", "test": "selected on test"}
    # Every repeat alike on each side (0.8 against 0.7): no spread, so the means decide and say so.
    top = body["configurations"][0]
    assert top["validation"] == "test" and top["best_val_accuracy"]["std"] == 0
    assert (top["vs_next"]["distinguishable"], top["vs_next"]["p_value"], top["vs_next"]["statistic"]) == (
        True,
        0,
        None,
    )
    assert {r["selected_on"] for r in body["comparison"] if r["validation"] == "test"} == {"selected on test"}


def test_sweep_curves_are_the_mean_of_the_repeats_with_a_min_max_band() -> None:
    from api.reports import plots

    runs: list[list[tuple[int, float | None]]] = [
        [(1, 0.5), (2, 0.7), (3, 0.8)],
        [(1, 0.7), (2, None), (3, 0.6)],
        [(1, 0.9)],
    ]
    epochs, means, lows, highs = plots.mean_band(runs)
    assert epochs == [1, 2, 3]
    assert means == pytest.approx([0.7, 0.7, 0.7])
    assert (lows, highs) == (pytest.approx([0.5, 0.7, 0.6]), pytest.approx([0.9, 0.7, 0.8]))
    all_gaps = plots.mean_band([[(1, None)], [(1, float("nan"))]])
    assert math.isnan(all_gaps[1][0])
    png = plots.sweep_band_png({"adam": runs, "sgd": [[(1, 0.4)]]}, "val_accuracy", "sweep")
    assert png.startswith(b"\x89PNG")
