"""The training options: each rule held to Keras' own, real fits that use them, a resume that keeps their state,
and old specs that train exactly as before the options existed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.utils.class_weight import compute_class_weight

from training.data import load_splits
from training.labels import class_weights
from training.networks import build_loss, build_network, build_optimizer, compile_network
from training.options import EarlyStopping, Monitor, ReduceOnPlateau
from training.results import EpochResult, ResumePoint
from training.resume import CONTROLS, capture_state
from training.runner import run_experiment
from training.schedules import TrainingControls, scheduled_rate
from training.spec import ExperimentSpec, Optimizer

STEPS = 7  # steps per epoch for the schedule comparisons: the epoch's first step is k x STEPS


def spec(**fields: Any) -> ExperimentSpec:
    base = {"dataset": "mnist", "epochs": 3, "batch_size": 64, "train_size": 320, "deterministic": True}
    return ExperimentSpec.model_validate({**base, **fields})


def history(epochs: list[EpochResult]) -> list[tuple[Any, ...]]:
    return [(e.epoch, e.loss, e.accuracy, e.val_loss, e.val_accuracy) for e in epochs]


def float32_close(expected: list[float]) -> Any:
    # Keras computes its schedules in float32: a few units in its last place.
    return pytest.approx(expected, rel=1e-5)


def keras_rates(schedule: keras.optimizers.schedules.LearningRateSchedule, epochs: int) -> list[float]:
    return [float(schedule(k * STEPS)) for k in range(epochs)]


def our_rates(fields: dict[str, Any], epochs: int = 8) -> list[float]:
    controls = TrainingControls(spec(epochs=epochs, learning_rate=0.1, lr_schedule=fields))
    rates = [controls.learning_rate(k) for k in range(epochs)]
    assert all(rate is not None for rate in rates)
    return [float(r) for r in rates if r is not None]


# --- the spec: what it accepts, and what it says when it refuses ---------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"early_stopping": {"monitor": "val_f1"}}, "val_loss"),
        ({"early_stopping": {"min_delta": -1}}, "early_stopping.min_delta must be a finite number >= 0"),
        ({"lr_schedule": {"type": "linear"}}, "'constant', 'step', 'exponential', 'cosine', 'plateau'"),
        ({"lr_schedule": {"type": "step", "every_epochs": 2, "factor": 1.5}}, "between 0 and 1"),
        ({"lr_schedule": {"type": "constant", "warmup_epochs": 3}}, "must be fewer than epochs (3)"),
        ({"weight_decay": 0}, "weight_decay must be a finite number > 0"),
        ({"clipnorm": 1.0, "clipvalue": 0.5}, "clipnorm and clipvalue cannot both be set"),
        ({"label_smoothing": 1.0}, "label_smoothing must be between 0 and 1"),
        (
            {"label_smoothing": 0.1, "loss": "sparse_categorical_crossentropy"},
            "label_smoothing needs loss categorical_crossentropy or binary_crossentropy, not "
            "sparse_categorical_crossentropy: use categorical_crossentropy",
        ),
        ({"label_smoothing": 0.1, "loss": "mse"}, "not mse: change the loss, or drop label_smoothing"),
        ({"class_weight": {"eleven": 2.0}}, "'eleven' is no class of mnist; its classes are 0, 1, 2"),
        ({"class_weight": {"3": -1.0}}, "the weight of '3' must be a finite number >= 0"),
        ({"class_weight": "uniform"}, "balanced"),
    ],
)
def test_a_bad_option_is_refused_saying_what_to_send(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        spec(**fields)
    assert message in str(refused.value)


def test_the_options_resolve_their_defaults_into_the_spec() -> None:
    resolved = spec(
        epochs=6,
        optimizer="adamw",
        early_stopping={},
        lr_schedule={"type": "cosine", "warmup_epochs": 2},
        label_smoothing=0.1,
        class_weight={"1": 2.0, "0": 0.5},
    )
    assert resolved.early_stopping == EarlyStopping(monitor=Monitor.VAL_LOSS, patience=3, min_delta=0.0)
    assert resolved.lr_schedule is not None and resolved.lr_schedule.decay_epochs == 4  # type: ignore[union-attr]
    assert resolved.weight_decay == 0.004  # AdamW's Keras default, recorded
    assert str(resolved.resolved_loss) == "categorical_crossentropy"  # the smoothed loss for one-hot targets
    assert resolved.class_weight == {"0": 0.5, "1": 2.0}  # by name, in the classes' order
    cats = spec(dataset="cats_vs_dogs", head={"units": 1, "activation": "sigmoid"}, class_weight={"1": 3, "cat": 1})
    assert cats.class_weight == {"cat": 1.0, "dog": 3.0}
    assert class_weights(cats, np.array([0, 1])) == {0: 1.0, 1: 3.0}


def test_balanced_class_weights_are_scikit_learns() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2, 5, 5, 5, 5])
    weights = class_weights(spec(class_weight="balanced"), labels)
    present = np.unique(labels)
    expected = compute_class_weight("balanced", classes=present, y=labels)
    assert weights == pytest.approx(dict(zip(present.tolist(), expected.tolist(), strict=True)))


# --- old specs: configured exactly as before ----------------------------------------------------------------------

BEFORE = {
    Optimizer.SGD: lambda: keras.optimizers.SGD(learning_rate=0.01),
    Optimizer.SGD_NESTEROV: lambda: keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
    Optimizer.ADAGRAD: lambda: keras.optimizers.Adagrad(learning_rate=0.001),
    Optimizer.RMSPROP: lambda: keras.optimizers.RMSprop(learning_rate=0.001),
    Optimizer.ADADELTA: lambda: keras.optimizers.Adadelta(learning_rate=0.001),
    Optimizer.ADAM: lambda: keras.optimizers.Adam(learning_rate=0.001),
}


@pytest.mark.parametrize("optimizer", sorted(BEFORE))
def test_a_spec_without_options_builds_the_optimizer_and_loss_of_before(optimizer: Optimizer) -> None:
    old = spec(optimizer=optimizer)
    # Keras numbers the names of the optimizers one process makes: all but the name.
    built, before = (
        {k: v for k, v in o.get_config().items() if k != "name"} for o in (build_optimizer(old), BEFORE[optimizer]())
    )
    assert built == before
    assert build_loss(old) == "sparse_categorical_crossentropy"  # the name, as compile() was always given
    network = compile_network(build_network(old), old)
    assert network.loss == "sparse_categorical_crossentropy"
    assert {k: v for k, v in network.optimizer.get_config().items() if k != "name"} == before
    assert not TrainingControls(old).active
    assert TrainingControls(old).learning_rate(0) is None  # the optimizer's rate is never touched


def test_options_reach_the_optimizer_and_the_loss() -> None:
    given = spec(optimizer="sgd", weight_decay=0.01, clipnorm=1.5, label_smoothing=0.2)
    config = build_optimizer(given).get_config()
    assert (config["weight_decay"], config["clipnorm"], config["clipvalue"]) == (0.01, 1.5, None)
    assert build_optimizer(spec(clipvalue=0.5)).get_config()["clipvalue"] == 0.5
    assert isinstance(build_optimizer(spec(optimizer="adamw")), keras.optimizers.AdamW)
    loss = build_loss(given)
    assert isinstance(loss, keras.losses.CategoricalCrossentropy) and loss.get_config()["label_smoothing"] == 0.2
    binary = spec(dataset="cats_vs_dogs", head={"units": 1, "activation": "sigmoid"}, label_smoothing=0.1)
    assert isinstance(build_loss(binary), keras.losses.BinaryCrossentropy)


# --- the schedules, held to Keras' own objects ---------------------------------------------------------------------


def test_step_decay_is_keras_staircase_exponential_decay() -> None:
    keras_step = keras.optimizers.schedules.ExponentialDecay(0.1, 3 * STEPS, 0.5, staircase=True)
    assert our_rates({"type": "step", "every_epochs": 3, "factor": 0.5}) == float32_close(keras_rates(keras_step, 8))


def test_exponential_decay_is_keras_exponential_decay_one_step_an_epoch() -> None:
    keras_exponential = keras.optimizers.schedules.ExponentialDecay(0.1, STEPS, 0.8)
    assert our_rates({"type": "exponential", "rate": 0.8}) == float32_close(keras_rates(keras_exponential, 8))


def test_cosine_decay_with_warm_up_is_keras_cosine_decay() -> None:
    # Keras warms up from its initial rate to warmup_target, then decays from there: base / (w + 1) up to base.
    keras_cosine = keras.optimizers.schedules.CosineDecay(
        0.1 / 3, 4 * STEPS, alpha=0.2, warmup_target=0.1, warmup_steps=2 * STEPS
    )
    ours = our_rates({"type": "cosine", "decay_epochs": 4, "alpha": 0.2, "warmup_epochs": 2})
    assert ours == float32_close(keras_rates(keras_cosine, 8))
    plain = keras.optimizers.schedules.CosineDecay(0.1, 8 * STEPS)
    assert our_rates({"type": "cosine"}) == float32_close(keras_rates(plain, 8))  # decay_epochs: every epoch


def test_warm_up_comes_before_any_schedule_and_alone() -> None:
    warm = keras.optimizers.schedules.CosineDecay(0.1 / 4, 10**9, warmup_target=0.1, warmup_steps=3 * STEPS)
    assert our_rates({"type": "constant", "warmup_epochs": 3}) == float32_close(keras_rates(warm, 8))
    step = keras.optimizers.schedules.ExponentialDecay(0.1, 2 * STEPS, 0.5, staircase=True)
    ours = our_rates({"type": "step", "every_epochs": 2, "factor": 0.5, "warmup_epochs": 3})
    assert ours[:3] == float32_close(keras_rates(warm, 3))
    assert ours[3:] == float32_close(keras_rates(step, 5))  # the schedule's epochs counted after the warm-up


def _tiny_compiled(rate: float) -> keras.Model:
    network = keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(1)])
    network.compile(optimizer=keras.optimizers.SGD(learning_rate=rate), loss="mse")
    return network


# A watched figure's course: improving, flat, a diverged epoch (None: NaN for Keras), improving again.
COURSE = [1.0, 0.8, 0.79995, 0.81, 0.8, None, 0.7, 0.69, 0.70, 0.71, 0.72, 0.73]


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
@pytest.mark.parametrize(("patience", "cooldown", "min_delta"), [(1, 0, 0.0001), (2, 1, 0.0), (2, 0, 0.05)])
def test_reduce_on_plateau_is_keras_reduce_lr_on_plateau(
    monitor: str, patience: int, cooldown: int, min_delta: float
) -> None:
    figures = [None if v is None else (v if monitor == "val_loss" else 1 - v) for v in COURSE]
    fields = {"type": "plateau", "monitor": monitor, "factor": 0.5, "patience": patience}
    fields |= {"cooldown": cooldown, "min_delta": min_delta, "min_learning_rate": 0.01}
    controls = TrainingControls(spec(epochs=len(COURSE), learning_rate=0.1, lr_schedule=fields))
    mode = "min" if monitor.endswith("loss") else "max"
    theirs = keras.callbacks.ReduceLROnPlateau(
        monitor, 0.5, patience, mode=mode, min_delta=min_delta, cooldown=cooldown, min_lr=0.01
    )
    network = _tiny_compiled(0.1)
    theirs.set_model(network)
    theirs.on_train_begin()
    ours: list[float | None] = []
    keras_used: list[float] = []
    for epoch, value in enumerate(figures):
        ours.append(controls.learning_rate(epoch))
        keras_used.append(float(keras.ops.convert_to_numpy(network.optimizer.learning_rate)))
        controls.end_epoch(epoch, {monitor: value})
        theirs.on_epoch_end(epoch, {monitor: float("nan") if value is None else value})
    assert ours == keras_used  # float32 step for step, as the optimizer holds its rate
    assert min(keras_used) < 0.1  # the course does reduce it


@pytest.mark.parametrize("monitor", ["loss", "accuracy"])
@pytest.mark.parametrize(("patience", "min_delta"), [(1, 0.0), (2, 0.0), (3, 0.005), (2, 0.05)])
def test_early_stopping_stops_where_keras_early_stopping_does(monitor: str, patience: int, min_delta: float) -> None:
    figures = [None if v is None else (v if monitor == "loss" else 1 - v) for v in COURSE]
    controls = TrainingControls(
        spec(epochs=len(COURSE), early_stopping={"monitor": monitor, "patience": patience, "min_delta": min_delta})
    )
    mode = "min" if monitor.endswith("loss") else "max"
    theirs = keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, min_delta=min_delta, mode=mode)
    network = _tiny_compiled(0.1)
    theirs.set_model(network)
    theirs.on_train_begin()
    ours_stop = theirs_stop = None
    for epoch, value in enumerate(figures):
        if ours_stop is None and controls.end_epoch(epoch, {monitor: value}):
            ours_stop = epoch + 1
        theirs.on_epoch_end(epoch, {monitor: float("nan") if value is None else value})
        if theirs_stop is None and network.stop_training:
            theirs_stop = epoch + 1
    assert ours_stop == theirs_stop == controls.stopped_early_at
    assert ours_stop is not None


# --- real fits -----------------------------------------------------------------------------------------------------


def test_the_optimizer_trains_each_epoch_at_the_scheduled_rate(data_dir: Path, tmp_path: Path) -> None:
    scheduled = spec(learning_rate=0.01, lr_schedule={"type": "exponential", "rate": 0.5, "warmup_epochs": 1})
    result = run_experiment(scheduled, data_dir, tmp_path)
    steps = load_splits(scheduled, data_dir).train.steps_per_epoch
    assert steps == 5
    warm = keras.optimizers.schedules.CosineDecay(0.005, 10**9, warmup_target=0.01, warmup_steps=steps)
    decay = keras.optimizers.schedules.ExponentialDecay(0.01, steps, 0.5)
    expected = [float(warm(0)), float(decay(0)), float(decay(steps))]
    assert result.learning_rates == float32_close(expected)
    assert [epoch.learning_rate for epoch in result.epochs] == result.learning_rates  # what the worker stores
    assert [scheduled_rate(scheduled.lr_schedule, 0.01, k) for k in range(3)] == float32_close(expected)  # type: ignore[arg-type]
    assert result.evaluation is not None


def test_early_stopping_ends_training_and_the_best_epoch_is_still_chosen_by_validation_accuracy(
    data_dir: Path, tmp_path: Path
) -> None:
    # No val_loss improves by 10: the first epoch sets the best, the second waits, and training stops after it.
    stopping = spec(epochs=4, early_stopping={"monitor": "val_loss", "patience": 1, "min_delta": 10})
    result = run_experiment(stopping, data_dir, tmp_path)
    assert [e.epoch for e in result.epochs] == [1, 2]
    assert result.stopped_early_at == 2 and result.stopped is None
    best = max(result.epochs, key=lambda e: e.val_accuracy or 0.0)
    assert (result.best_epoch, result.best_val_accuracy) == (best.epoch, best.val_accuracy)
    assert result.evaluation is not None and result.checkpoint is not None


def test_label_smoothing_and_class_weights_train_and_evaluate_with_the_smoothed_loss(
    data_dir: Path, tmp_path: Path
) -> None:
    options = spec(epochs=1, label_smoothing=0.1, class_weight="balanced", weight_decay=0.01, clipnorm=1.0)
    result = run_experiment(options, data_dir, tmp_path)
    assert result.evaluation is not None and result.evaluation.test_loss is not None
    best = keras.models.load_model(result.checkpoint, compile=False)
    splits = load_splits(options, data_dir)
    outputs = best.predict(splits.test, verbose=0)
    targets = np.eye(10, dtype="float32")[splits.test_labels]
    smoothed = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(targets, outputs)
    assert result.evaluation.test_loss == pytest.approx(float(smoothed), rel=1e-4)


# --- resume ----------------------------------------------------------------------------------------------------------


def test_a_run_resumed_after_an_epoch_keeps_the_schedule_plateau_and_early_stopping_state(
    data_dir: Path, tmp_path: Path
) -> None:
    # min_delta 10: no epoch after the first counts as better, so the plateau reduces after the second epoch, and
    # early stopping (patience 2) stops after the third. A resume that forgot their state after epoch 1 would
    # start counting again there: a later reduction, and a fourth epoch.
    fields = {
        "epochs": 4,
        "lr_schedule": {"type": "plateau", "monitor": "val_loss", "patience": 1, "factor": 0.5, "min_delta": 10},
        "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 10},
    }
    whole = run_experiment(spec(**fields), data_dir, tmp_path / "whole")
    assert [e.epoch for e in whole.epochs] == [1, 2, 3] and whole.stopped_early_at == 3
    assert whole.learning_rates == pytest.approx([0.001, 0.001, 0.0005])

    points: list[ResumePoint] = []
    run_experiment(
        spec(**fields),
        data_dir,
        tmp_path / "first",
        on_epoch_end=lambda _e, p: points.append(p),
        should_stop=lambda: True,  # a job killed after its first epoch: only the stored point crosses over
    )
    assert [p.epoch for p in points] == [1]
    with np.load(io.BytesIO(points[0].state)) as saved:
        assert CONTROLS in saved.files
    resumed = run_experiment(spec(**fields), data_dir, tmp_path / "second", resume=points[0])
    assert [e.epoch for e in resumed.epochs] == [2, 3]
    assert history(whole.epochs[1:]) == history(resumed.epochs)
    assert resumed.learning_rates == whole.learning_rates[1:]
    assert resumed.stopped_early_at == whole.stopped_early_at == 3
    assert (resumed.best_epoch, resumed.best_val_accuracy) == (whole.best_epoch, whole.best_val_accuracy)
    assert resumed.evaluation == whole.evaluation


def test_a_resume_point_after_early_stopping_trains_nothing_more(data_dir: Path, tmp_path: Path) -> None:
    stopping = spec(epochs=3, early_stopping={"monitor": "loss", "patience": 1, "min_delta": 10})
    points: list[ResumePoint] = []
    whole = run_experiment(stopping, data_dir, tmp_path / "whole", on_epoch_end=lambda _e, p: points.append(p))
    assert whole.stopped_early_at == 2
    resumed = run_experiment(stopping, data_dir, tmp_path / "again", resume=points[-1])
    assert resumed.epochs == [] and resumed.stopped_early_at == 2
    assert resumed.evaluation == whole.evaluation


def test_a_spec_without_options_keeps_its_resume_state_as_before(data_dir: Path, tmp_path: Path) -> None:
    points: list[ResumePoint] = []
    old = spec(epochs=1)
    result = run_experiment(old, data_dir, tmp_path, on_epoch_end=lambda _e, p: points.append(p))
    with np.load(io.BytesIO(points[0].state)) as saved:
        assert CONTROLS not in saved.files
    fresh = compile_network(build_network(old), old)
    from training.resume import restore_state

    assert restore_state(fresh, points[0].state) is None
    assert capture_state(fresh) == points[0].state
    assert result.learning_rates == pytest.approx([0.001])  # the spec's rate, untouched


def test_plateau_defaults_are_keras_own() -> None:
    ours = ReduceOnPlateau(type="plateau")
    theirs = keras.callbacks.ReduceLROnPlateau()
    assert (ours.factor, ours.min_delta, ours.cooldown, ours.min_learning_rate) == (
        theirs.factor,
        theirs.min_delta,
        theirs.cooldown,
        theirs.min_lr,
    )


def test_options_that_change_nothing_train_the_history_of_a_spec_without_them(data_dir: Path, tmp_path: Path) -> None:
    # A constant schedule sets the rate the optimizer already has, early stopping that never stops only watches,
    # weights of 1 weigh nothing: the run is the old spec's, to the bit (the machinery itself changes nothing).
    old = run_experiment(spec(epochs=2), data_dir, tmp_path / "old")
    inert = spec(
        epochs=2,
        lr_schedule={"type": "constant"},
        early_stopping={"patience": 1000},
        class_weight={str(d): 1.0 for d in range(10)},
    )
    same = run_experiment(inert, data_dir, tmp_path / "inert")
    assert history(same.epochs) == history(old.epochs)
    assert same.learning_rates == old.learning_rates and same.stopped_early_at is None
    assert same.evaluation == old.evaluation
