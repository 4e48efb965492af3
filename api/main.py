"""The FastAPI app: `uvicorn api.main:app`. Interactive API reference at /docs."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI

from api.http.auth import bearer_key, current_user
from api.http.browser_headers import BrowserHeaders
from api.http.errors import install_error_handlers, responses
from api.http.metrics import RequestMetrics
from api.http.openapi import operation_id
from api.http.request_limits import BodySizeLimit, StorableText
from api.roles import take_roles
from api.routers import (
    backprop,
    dataset_images,
    datasets,
    events,
    experiments,
    exports,
    health,
    metrics,
    networks,
    predictions,
    registry,
    reports,
    sweeps,
    users,
)
from api.ui import install_ui
from config import get_settings
from infra.redaction import install_log_redaction

DESCRIPTION = """
Epochal trains Keras networks as queued jobs. POST an experiment, follow its status, read its
per-epoch metrics, test evaluation and confusion matrix, download `best_model.h5` (or the network as
`.keras`, a TF Serving SavedModel or ONNX), and POST an image for a prediction.

Every route but /health and this reference needs an API key: `Authorization: Bearer <key>`. The
first admin's key is written to `var/api-key` when the service first starts; admins create users and
keys at /users.
"""


def silence_access_log() -> None:
    """What uvicorn's --no-access-log does, from the settings: no line is even formatted per request.

    uvicorn reads whether "uvicorn.access" has handlers when it opens a connection, after it imported the app,
    so emptying them here takes effect however uvicorn was started (CLI, Dockerfile, Compose).
    """
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False


def create_app() -> FastAPI:
    install_log_redaction()  # no configured password in any log line the API process writes
    settings = get_settings()
    if not settings.access_log:
        silence_access_log()
    # /docs and /redoc are served by install_ui from vendored files, not from FastAPI's CDN links.
    app = FastAPI(
        title="Epochal",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,  # `create_experiment`: what a generated client names the call
        lifespan=take_roles,
    )
    install_error_handlers(app)
    # The last added runs first: the size cap, so the text check only ever buffers a capped body.
    app.add_middleware(StorableText)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        max_json_bytes=settings.max_json_bytes,
        max_drain_bytes=settings.max_drain_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        upload_routes=datasets.UPLOAD_ROUTES,
    )
    app.add_middleware(RequestMetrics)  # it times and counts every answer, a 413 included
    # Outermost: the browser headers go on every answer, a 413 from the size cap included.
    app.add_middleware(BrowserHeaders)
    # One dependency guards every router but health's: a route added to any of them needs a key. Checking
    # the key reads the database, so any of these routes can also answer 503 when the database is down.
    guarded = (experiments, sweeps, reports, datasets, dataset_images, networks, backprop, registry, users, metrics)
    for module in guarded:
        app.include_router(module.router, dependencies=[Depends(current_user)], responses=responses(401, 503))
    # The prediction and submission routes verify the key in the same worker-thread hop as their work (api/http/auth.py
    # says how they keep the same answers); without a key they are a 401 here already, as every other route.
    # So do the event streams, in a session they close before streaming (a stream must hold no connection), and the
    # exports, which hold none while a network is exported.
    for router in (predictions.router, events.router, exports.router, experiments.submissions, sweeps.submissions):
        app.include_router(router, dependencies=[Depends(bearer_key)], responses=responses(401, 503))
    app.include_router(health.router)
    install_ui(app)  # public pages: the dashboard at /ui/ and the API reference; their data calls need a key
    return app


app = create_app()
