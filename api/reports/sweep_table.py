"""The comparison tables of a sweep, derived from the stored history and evaluations, and what its runs came to.

`comparison_rows` has one row per run; `configuration_rows` puts the repeats of a configuration
together: n, mean, standard deviation and 95% interval of best validation accuracy and of test
accuracy, collapsed runs, and a Welch t-test between each configuration and the next in the ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from api.schemas.experiments import selection_label
from api.schemas.sweeps import ComparisonRow, ConfigurationRow, Distinction, StatisticsNote, Stats, SweepState
from domain.lifecycle import Status
from models import Experiment
from models.specs import head_of, validation_of
from training import stats
from training.spec import Validation

STATISTICS = StatisticsNote(
    ranking="configurations by mean best validation accuracy over their succeeded runs; with validation "
    "'held_out' the test split plays no part in it",
    test=stats.WELCH_METHOD,
    confidence_interval=stats.CI_METHOD,
    collapse=stats.COLLAPSE_RULE,
)


def sweep_state(experiments: list[Experiment]) -> SweepState:
    """What the runs came to together: cancelled runs are neither a success nor a failure."""
    statuses = [e.status for e in experiments]
    if not all(s.finished for s in statuses):
        return SweepState.RUNNING
    succeeded = statuses.count(Status.SUCCEEDED)
    if statuses and succeeded == len(statuses):
        return SweepState.SUCCEEDED
    if succeeded:
        return SweepState.PARTLY_SUCCEEDED
    return SweepState.FAILED if Status.FAILED in statuses else SweepState.CANCELLED


def _extreme(values: list[float | None], pick: Callable[[list[float]], float]) -> float | None:
    finite = [v for v in values if v is not None]
    return pick(finite) if finite else None


def _row(experiment: Experiment) -> ComparisonRow:
    metrics = experiment.metrics
    last = metrics[-1] if metrics else None
    # The worker records the best epoch when it finishes; a running experiment's best is read off its history.
    best_epoch = experiment.best_epoch
    if best_epoch is None and any(m.val_accuracy is not None for m in metrics):
        best_epoch = max((m for m in metrics if m.val_accuracy is not None), key=lambda m: m.val_accuracy or 0.0).epoch
    best = next((m for m in metrics if m.epoch == best_epoch), None)
    evaluation = experiment.evaluation
    validation = validation_of(experiment)
    return ComparisonRow(
        rank=None,
        experiment_id=experiment.id,
        label=experiment.name,
        status=experiment.status,
        optimizer=experiment.optimizer,
        learning_rate=experiment.learning_rate,
        head=head_of(experiment),
        loss=experiment.loss,
        best_epoch=best.epoch if best else None,
        best_accuracy=_extreme([m.accuracy for m in metrics], max),
        best_loss=_extreme([m.loss for m in metrics], min),
        best_val_accuracy=best.val_accuracy if best else None,
        best_val_loss=_extreme([m.val_loss for m in metrics], min),
        final_accuracy=last.accuracy if last else None,
        final_loss=last.loss if last else None,
        final_val_accuracy=last.val_accuracy if last else None,
        final_val_loss=last.val_loss if last else None,
        test_accuracy=evaluation.test_accuracy if evaluation else None,
        test_loss=evaluation.test_loss if evaluation else None,
        training_seconds=sum(m.seconds for m in metrics),
        validation=validation,
        selected_on=selection_label(validation, experiment.validation_count),
        seed=experiment.seed,
        repeat=experiment.repeat or 0,
        collapsed=_collapsed(experiment),
    )


def _class_counts(experiment: Experiment) -> list[int] | None:
    # The confusion matrix' rows are the true classes: their sums are the test split's class counts.
    evaluation = experiment.evaluation
    return [sum(row) for row in evaluation.confusion_matrix] if evaluation and evaluation.confusion_matrix else None


def _collapsed(experiment: Experiment) -> bool | None:
    counts = _class_counts(experiment)
    evaluation = experiment.evaluation
    if counts is None or evaluation is None or evaluation.test_accuracy is None:
        return None
    return stats.is_collapsed(evaluation.test_accuracy, counts)


def comparison_rows(experiments: list[Experiment]) -> list[ComparisonRow]:
    """One row per experiment, best validation accuracy first; experiments without epochs last, unranked."""
    rows = [_row(e) for e in experiments]
    ranked = sorted(
        (r for r in rows if r.best_val_accuracy is not None),
        key=lambda r: (-(r.best_val_accuracy or 0.0), r.experiment_id),
    )
    for rank, row in enumerate(ranked, start=1):
        row.rank = rank
    return ranked + [r for r in rows if r.best_val_accuracy is None]


def configuration_key(experiment: Experiment) -> tuple[Hashable, ...]:
    """What makes runs repeats of one configuration: every spec field but the seed, and the seed they came from."""
    return (
        experiment.name,
        experiment.dataset,
        experiment.network,
        experiment.optimizer,
        experiment.learning_rate,
        experiment.head_units,
        experiment.head_activation,
        experiment.loss,
        experiment.epochs,
        experiment.batch_size,
        experiment.train_size,
        validation_of(experiment),
        experiment.validation_split,
        experiment.mixed_precision,
        experiment.deterministic,
        experiment.jit_compile,
        # Rows from before repeats have no base seed: each is its own configuration, as it was run.
        experiment.base_seed if experiment.base_seed is not None else ("seed", experiment.seed),
    )


def _stats(values: list[float]) -> Stats:
    summary = stats.summarize(values)
    return Stats(n=summary.n, mean=summary.mean, std=summary.std, ci95_low=summary.ci_low, ci95_high=summary.ci_high)


def _distinction(metric: str, a: list[float], b: list[float], next_label: str | None) -> Distinction:
    result = stats.welch(a, b)
    if result is None:
        return Distinction(
            metric=metric,
            next_label=next_label,
            method=stats.WELCH_METHOD,
            statistic=None,
            df=None,
            p_value=None,
            distinguishable=None,
        )
    return Distinction(
        metric=metric,
        next_label=next_label,
        method=stats.WELCH_METHOD,
        statistic=result.statistic,
        df=result.df,
        p_value=result.p_value,
        distinguishable=result.distinguishable,
    )


def configuration_rows(experiments: list[Experiment]) -> list[ConfigurationRow]:
    """One row per configuration, ranked by mean best validation accuracy, each tested against the next one."""
    groups: dict[tuple[Hashable, ...], list[Experiment]] = {}
    for experiment in experiments:
        groups.setdefault(configuration_key(experiment), []).append(experiment)
    rows: list[tuple[ConfigurationRow, list[float], list[float]]] = []
    for runs in groups.values():
        first = runs[0]
        succeeded = [e for e in runs if e.status is Status.SUCCEEDED]
        val = [e.best_val_accuracy for e in succeeded if e.best_val_accuracy is not None]
        test = [
            e.evaluation.test_accuracy for e in succeeded if e.evaluation and e.evaluation.test_accuracy is not None
        ]
        counts = next((c for c in map(_class_counts, succeeded) if c), None)
        validation = validation_of(first)
        row = ConfigurationRow(
            rank=None,
            label=first.name,
            validation=validation,
            selected_on="selected on test" if validation is Validation.TEST else "held-out validation",
            experiment_ids=[e.id for e in runs],
            seeds=[e.seed for e in runs],
            succeeded=len(succeeded),
            unfinished=sum(not e.status.finished for e in runs),
            failed=sum(e.status is Status.FAILED for e in runs),
            cancelled=sum(e.status is Status.CANCELLED for e in runs),
            best_val_accuracy=_stats(val),
            test_accuracy=_stats(test),
            collapsed=sum(_collapsed(e) is True for e in succeeded),
            chance=stats.chance_levels(counts)[0] if counts else None,
            vs_next=None,
            test_vs_next=None,
        )
        rows.append((row, val, test))
    ranked = sorted(
        (r for r in rows if r[0].best_val_accuracy.mean is not None),
        key=lambda r: (-(r[0].best_val_accuracy.mean or 0.0), min(r[0].experiment_ids)),
    )
    for rank, (row, val, test) in enumerate(ranked, start=1):
        row.rank = rank
        if rank < len(ranked):
            next_row, next_val, next_test = ranked[rank]
            row.vs_next = _distinction("best_val_accuracy", val, next_val, next_row.label)
            row.test_vs_next = _distinction("test_accuracy", test, next_test, next_row.label)
    return [r[0] for r in ranked] + [r[0] for r in rows if r[0].best_val_accuracy.mean is None]
