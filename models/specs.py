"""Conversions between the experiment spec and its row, so both stay in one vocabulary."""

from __future__ import annotations

from models.tables import Experiment
from training.spec import DATASETS, ExperimentSpec, Head, Validation, repeat_seed


def experiment_from_spec(spec: ExperimentSpec) -> Experiment:
    """A new queued experiment row holding every field of a validated spec."""
    head = spec.resolved_head
    return Experiment(
        name=spec.name,
        dataset=spec.dataset,
        network=spec.resolved_network,
        optimizer=spec.optimizer,
        learning_rate=spec.resolved_learning_rate,
        head_units=head.units,
        head_activation=head.activation,
        loss=spec.resolved_loss,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        train_size=spec.train_size,
        validation=spec.validation,
        validation_split=spec.validation_split,
        seed=spec.seed,
        base_seed=spec.seed,
        repeat=0,
        mixed_precision=spec.mixed_precision,
        deterministic=spec.deterministic,
        jit_compile=spec.jit_compile,
    )


def repeated_experiments(spec: ExperimentSpec, repeats: int) -> list[Experiment]:
    """`repeats` new rows of one configuration: repeat i trains with repeat_seed(spec.seed, i), recorded on the row."""
    rows = []
    for index in range(repeats):
        row = experiment_from_spec(spec)
        row.seed, row.base_seed, row.repeat = repeat_seed(spec.seed, index), spec.seed, index
        rows.append(row)
    return rows


def validation_of(experiment: Experiment) -> Validation:
    """How `experiment` validated; a row not yet flushed may lack it, and then the pre-0005 rule decides."""
    if experiment.validation is not None:
        return experiment.validation
    return Validation.TEST if experiment.validation_split is None else Validation.HELD_OUT


def head_of(experiment: Experiment) -> Head:
    """The output head stored in `experiment`'s two head columns."""
    return Head(units=experiment.head_units, activation=experiment.head_activation)


def _train_size_of(experiment: Experiment) -> int | None:
    # A row from before train_size was bounded by the training split may ask for more than there is; training
    # took the whole split then (it slices the shuffled split), so the split's size reads it the same way.
    if experiment.train_size is None:
        return None
    return min(experiment.train_size, DATASETS[experiment.dataset].train_examples)


def spec_of(experiment: Experiment) -> ExperimentSpec:
    """The spec stored in `experiment`, validated again (a row may predate a rule)."""
    return ExperimentSpec(
        name=experiment.name,
        dataset=experiment.dataset,
        network=experiment.network,
        optimizer=experiment.optimizer,
        learning_rate=experiment.learning_rate,
        head=head_of(experiment),
        loss=experiment.loss,
        epochs=experiment.epochs,
        batch_size=experiment.batch_size,
        train_size=_train_size_of(experiment),
        validation=validation_of(experiment),
        validation_split=experiment.validation_split,
        seed=experiment.seed,
        mixed_precision=experiment.mixed_precision,
        deterministic=experiment.deterministic,
        jit_compile=experiment.jit_compile,
    )
