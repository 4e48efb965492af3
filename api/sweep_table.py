"""The comparison table of a sweep, derived from the stored history and evaluations."""

from __future__ import annotations

from collections.abc import Callable

from api.schemas import ComparisonRow
from models import Experiment
from models.specs import head_of


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
    )


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
