"""The FastAPI app: `uvicorn api.main:app`. Interactive API reference at /docs."""

from __future__ import annotations

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.routers import backprop, datasets, experiments, health, predictions, reports, sweeps
from config import get_settings, install_log_redaction

DESCRIPTION = """
Epochal trains Keras networks as queued jobs. POST an experiment, follow its status, read its
per-epoch metrics, test evaluation and confusion matrix, download `best_model.h5`, and POST an
image for a prediction.
"""


def create_app() -> FastAPI:
    install_log_redaction()  # no configured password in any log line the API process writes
    settings = get_settings()
    app = FastAPI(title="Epochal", version="0.1.0", description=DESCRIPTION)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, max_json_bytes=settings.max_json_bytes)
    for module in (experiments, sweeps, reports, predictions, datasets, backprop, health):
        app.include_router(module.router)
    return app


app = create_app()
