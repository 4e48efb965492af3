"""Predictions: one image in, a label and per-class probabilities out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, UploadFile
from fastapi.params import File
from sqlalchemy.orm import Session

from api.deps import SessionDep
from api.errors import conflict, not_found
from api.predictors import get_predictor_cache
from api.routers.experiments import get_artifact, get_experiment
from api.schemas import PredictionRead
from models import Experiment
from models.queries import best_experiment
from training.errors import ImageTooLarge, InvalidImage
from training.results import CHECKPOINT_NAME
from training.spec import Dataset, Status

router = APIRouter(tags=["predictions"])

ImageUpload = Annotated[UploadFile, File(description="A PNG or JPEG image.")]
MAX_IMAGE_BYTES = 20 * 1024 * 1024


def _predict(session: Session, experiment: Experiment, file: UploadFile) -> PredictionRead:
    if experiment.status is not Status.SUCCEEDED:
        raise conflict(f"experiment {experiment.id} is {experiment.status}; predictions need a succeeded experiment")
    data = file.file.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise HTTPException(status_code=413, detail=f"images must be at most {MAX_IMAGE_BYTES // 2**20} MiB")
    predictor = get_predictor_cache().get(experiment, get_artifact(session, experiment.id, CHECKPOINT_NAME))
    try:
        prediction = predictor.predict_image(data)
    except InvalidImage as exc:
        raise HTTPException(status_code=415, detail=str(exc)) from exc
    except ImageTooLarge as exc:
        raise HTTPException(status_code=413, detail=str(exc)) from exc
    return PredictionRead(
        experiment_id=experiment.id,
        label=prediction.label,
        class_index=prediction.class_index,
        probabilities=prediction.probabilities,
        outputs=prediction.outputs,
    )


@router.post("/experiments/{experiment_id}/predictions", response_model=PredictionRead)
def predict_with_experiment(experiment_id: int, file: ImageUpload, session: SessionDep) -> PredictionRead:
    """Classify one image with this experiment's best checkpoint."""
    return _predict(session, get_experiment(session, experiment_id), file)


@router.post("/datasets/{dataset}/predictions", response_model=PredictionRead)
def predict_with_best(dataset: Dataset, file: ImageUpload, session: SessionDep) -> PredictionRead:
    """Classify one image with the best succeeded experiment on `dataset` (by validation accuracy)."""
    experiment = best_experiment(session, dataset)
    if experiment is None:
        raise not_found(
            f"no succeeded experiment on {dataset} yet; POST /experiments with dataset {dataset!s} and wait "
            "for it to succeed"
        )
    return _predict(session, experiment, file)
