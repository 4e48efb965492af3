"""Predictions: one image in, a label and per-class probabilities out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, UploadFile
from fastapi.params import File
from sqlalchemy.orm import Session

from api.access import ExperimentId, best_visible_experiment, visible_artifact, visible_experiment
from api.auth import CurrentUser
from api.deps import SessionDep, SettingsDep
from api.errors import conflict, not_found, responses
from api.predictors import get_predictor_cache
from api.quotas import check_prediction_rate
from api.schemas import PredictionRead
from models import Experiment, User
from training.errors import ImageTooLarge, InvalidImage
from training.results import CHECKPOINT_NAME
from training.spec import Dataset, Status

router = APIRouter(tags=["predictions"])

ImageUpload = Annotated[UploadFile, File(description="A PNG or JPEG image.")]
MAX_IMAGE_BYTES = 20 * 1024 * 1024
PREDICTION_ERRORS = responses(400, 404, 409, 413, 415, 422, 429)


def _predict(session: Session, user: User, experiment: Experiment, file: UploadFile) -> PredictionRead:
    if experiment.status is not Status.SUCCEEDED:
        raise conflict(f"experiment {experiment.id} is {experiment.status}; predictions need a succeeded experiment")
    data = file.file.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise HTTPException(status_code=413, detail=f"images must be at most {MAX_IMAGE_BYTES // 2**20} MiB")
    predictor = get_predictor_cache().get(experiment, visible_artifact(session, user, experiment.id, CHECKPOINT_NAME))
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


@router.post("/experiments/{experiment_id}/predictions", response_model=PredictionRead, responses=PREDICTION_ERRORS)
def predict_with_experiment(
    experiment_id: ExperimentId, file: ImageUpload, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> PredictionRead:
    """Classify one image with this experiment's best checkpoint."""
    check_prediction_rate(settings, user)
    return _predict(session, user, visible_experiment(session, user, experiment_id), file)


@router.post("/datasets/{dataset}/predictions", response_model=PredictionRead, responses=PREDICTION_ERRORS)
def predict_with_best(
    dataset: Dataset, file: ImageUpload, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> PredictionRead:
    """Classify one image with your best succeeded experiment on `dataset` (by validation accuracy)."""
    check_prediction_rate(settings, user)
    experiment = best_visible_experiment(session, user, dataset)
    if experiment is None:
        raise not_found(
            f"no succeeded experiment on {dataset} yet; POST /experiments with dataset {dataset!s} and wait "
            "for it to succeed"
        )
    return _predict(session, user, experiment, file)
