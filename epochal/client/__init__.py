"""A Python client for the Epochal REST API: `from epochal.client import Client`.

    with Client() as epochal:                      # EPOCHAL_URL / EPOCHAL_API_KEY, or var/api-key
        job = epochal.submit(dataset="mnist", optimizer="adam", epochs=3)
        for event in epochal.watch(job["id"]):
            print(event.status, [m["val_accuracy"] for m in event.new_epochs])
        print(epochal.evaluation(job["id"])["test_accuracy"])

It talks HTTP only: nothing of the service (api, worker, models, training) is imported.
"""

from epochal.client.errors import (
    ApiError,
    Conflict,
    ConnectionFailed,
    EpochalError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    WaitTimedOut,
)
from epochal.client.follow import Progress
from epochal.client.http import SWEEP_METRICS, Client, Image, UploadProgress
from epochal.client.settings import DEFAULT_URL, default_key, default_url
from epochal.client.sse import Event

__all__ = [
    "DEFAULT_URL",
    "SWEEP_METRICS",
    "ApiError",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "EpochalError",
    "Event",
    "Forbidden",
    "Image",
    "InvalidRequest",
    "NotFound",
    "Progress",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "UploadProgress",
    "WaitTimedOut",
    "default_key",
    "default_url",
]
