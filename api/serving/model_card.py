"""A trained network's model card: its spec, data, figures, input contract, and what its training really ran.

The versions are those each attempt's worker process recorded when it started training (worker/jobs.py
record_device), never the versions of the API process that writes the card.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from api.schemas.experiments import selection_label
from api.schemas.fields import UtcDatetime
from api.serving.model_contract import ModelInput, model_input
from models import Attempt, Experiment
from models.specs import described_dataset_of, spec_of, validation_of
from training.spec import Validation


class DatasetCard(BaseModel):
    name: str
    version: int = Field(description="The version trained on (the built-ins are version 1).")
    content_sha256: str | None = Field(
        description="The sha256 of the version's content (GET /datasets/{name} has it too); a built-in's is recorded "
        "when a worker first reads its data, null until then."
    )
    description: str


class Figures(BaseModel):
    validation: Validation = Field(description="held_out: chosen on held-out training data; test: on the test split.")
    selected_on: str = Field(description="In words; 'selected on test' marks optimistic test figures.")
    best_epoch: int | None
    validation_accuracy: float | None = Field(description="At the best epoch, on what selected it.")
    validation_count: int | None = Field(description="Examples it validated on.")
    test_accuracy: float | None
    test_loss: float | None


class AttemptRecord(BaseModel):
    """One attempt at the training, and what its worker process really ran (null: not recorded, before 0.1)."""

    number: int
    worker: str
    started_at: UtcDatetime
    ended_at: UtcDatetime | None
    outcome: str | None
    resumed_from_epoch: int
    device: str | None
    python: str | None
    tensorflow: str | None
    keras: str | None
    numpy: str | None
    service_version: str | None = Field(description="The service's git commit (or release) the worker ran.")


class TrainingRecord(BaseModel):
    seed: int
    device: str | None = Field(description="The device the checkpoint was trained on: a GPU's name, or CPU.")
    python: str | None = Field(description="Of the attempt that finished the training, as for the next four.")
    tensorflow: str | None
    keras: str | None
    numpy: str | None
    service_version: str | None
    attempts: list[AttemptRecord] = Field(description="Every attempt, oldest first.")
    trained_at: UtcDatetime | None = Field(description="When the training finished.")


class ModelCard(BaseModel):
    """What a trained network is, how good, what it takes, and how it was made."""

    model: str | None = Field(description="The registered model (null for an experiment's card).")
    version: int | None
    experiment_id: int
    spec: dict[str, Any] = Field(description="The experiment's spec, as POST /experiments takes it.")
    dataset: DatasetCard
    figures: Figures
    input: ModelInput = Field(description="The input contract: shape, dtype, range and preprocessing.")
    training: TrainingRecord


def _record(attempt: Attempt) -> AttemptRecord:
    return AttemptRecord(
        number=attempt.number,
        worker=attempt.worker,
        started_at=attempt.started_at,
        ended_at=attempt.ended_at,
        outcome=attempt.outcome,
        resumed_from_epoch=attempt.resumed_from_epoch,
        device=attempt.device,
        python=attempt.python_version,
        tensorflow=attempt.tensorflow_version,
        keras=attempt.keras_version,
        numpy=attempt.numpy_version,
        service_version=attempt.service_version,
    )


def model_card(experiment: Experiment, model: str | None = None, version: int | None = None) -> ModelCard:
    """The card of `experiment` (its evaluation and attempts loaded), as version `version` of `model` if given."""
    attempts = [_record(a) for a in experiment.attempts]
    # The attempt that wrote the checkpoint: the one that succeeded, else the last one there is.
    final = next((a for a in reversed(attempts) if a.outcome == "succeeded"), attempts[-1] if attempts else None)
    evaluation = experiment.evaluation
    validation = validation_of(experiment)
    info = described_dataset_of(experiment)
    return ModelCard(
        model=model,
        version=version,
        experiment_id=experiment.id,
        spec=spec_of(experiment).model_dump(mode="json", exclude_none=True),
        dataset=DatasetCard(
            name=info.name, version=info.version, content_sha256=info.content_sha256, description=info.description
        ),
        figures=Figures(
            validation=validation,
            selected_on=selection_label(validation, experiment.validation_count),
            best_epoch=experiment.best_epoch,
            validation_accuracy=experiment.best_val_accuracy,
            validation_count=experiment.validation_count,
            test_accuracy=None if evaluation is None else evaluation.test_accuracy,
            test_loss=None if evaluation is None else evaluation.test_loss,
        ),
        input=model_input(info),
        training=TrainingRecord(
            seed=experiment.seed,
            device=experiment.device,
            python=None if final is None else final.python,
            tensorflow=None if final is None else final.tensorflow,
            keras=None if final is None else final.keras,
            numpy=None if final is None else final.numpy,
            service_version=None if final is None else final.service_version,
            attempts=attempts,
            trained_at=experiment.finished_at,
        ),
    )
