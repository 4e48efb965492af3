"""Errors as JSON a person can act on: what is wrong and how to fix it."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from domain.errors import Conflict, DomainError, Invalid, NotFound, QuotaExceeded, Unavailable
from models.attempt_sessions import RowBusy, is_lock_timeout


class ErrorRead(BaseModel):
    """Every error the API answers: `detail` says what is wrong and how to fix it."""

    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong and what to do; for a 422, FastAPI's list of bad fields."
    )
    message: str | None = Field(default=None, description="For a 422: one readable sentence naming each bad field.")


ERROR_DESCRIPTIONS = {
    400: "The body could not be parsed (not UTF-8 JSON, or broken multipart).",
    401: "No valid API key: send `Authorization: Bearer <key>`.",
    403: "The key is valid, but this needs an admin.",
    404: "No such resource, or it belongs to another user (the two are not told apart).",
    409: "The resource is in a state that does not allow this.",
    413: "The request body is too large.",
    415: "The upload is not an image the service can read.",
    422: "The request is invalid; `message` names each bad field.",
    429: "A quota or rate limit was reached; `Retry-After` says when to try again. Nothing was done: sending the "
    "same request again is safe.",
    503: "The database or the broker is unavailable right now (GET /health says which); try again later. "
    "`Epochal-Nothing-Done: true` says the request changed nothing (safe to send again, even a POST).",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer, all in the one ErrorRead schema."""
    return {code: {"model": ErrorRead, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


def not_found(what: str) -> HTTPException:
    return HTTPException(status_code=404, detail=what)


def conflict(why: str) -> HTTPException:
    return HTTPException(status_code=409, detail=why)


def _field_path(loc: tuple[Any, ...] | list[Any], whole: str) -> str:
    # ("body", "head", "units") reads better as "head.units"; an error about the whole object is named `whole`.
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or whole


def _json_safe(value: Any) -> Any:
    # Python's JSON parser accepts the NaN and Infinity literals, but a JSON response cannot carry them:
    # an error echoing such an input would answer 500 instead of 422. Echo them as text instead.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _readable(error: dict[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown field; remove it (the accepted fields are listed at /docs)"
    return str(error.get("msg", "")).removeprefix("Value error, ")


def describe_validation_errors(errors: list[Any], whole: str = "body") -> str:
    """One sentence naming each bad field (or `whole`, for the object itself) and what is wrong with it."""
    return "; ".join(f"{_field_path(e.get('loc', ()), whole)}: {_readable(e)}" for e in errors)


async def _validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    # Keep FastAPI's structured list for programs, and add one readable sentence for people.
    for error in errors:
        error.pop("url", None)
        error.pop("ctx", None)
    body = {"message": describe_validation_errors(errors), "detail": _json_safe(jsonable_encoder(errors))}
    return JSONResponse(status_code=422, content=body)


# On a 503 whose request changed nothing (its transaction was rolled back): a client may send even a POST again.
# Without it a client must assume the request may have done something (epochal/client/retry.py).
NOTHING_DONE_HEADER = "Epochal-Nothing-Done"


async def _row_busy_handler(_request: Request, exc: Exception) -> JSONResponse:
    # A bounded lock wait ran out: the request's transaction is rolled back, so nothing of it happened.
    return JSONResponse(
        status_code=503,
        content={"detail": f"{exc} right now (its worker may be stopped mid-write); try again in a few seconds"},
        headers={"Retry-After": "5", NOTHING_DONE_HEADER: "true"},
    )


async def _database_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    if is_lock_timeout(exc):  # a bounded wait for a row (models/attempt_sessions.py) ran out: busy, not down
        return await _row_busy_handler(request, RowBusy("the experiment is being written by another transaction"))
    # A database restart or outage is the server's dependency failing, not a bug: say so, and that it is temporary.
    return JSONResponse(
        status_code=503,
        content={
            "detail": "the database is unavailable right now; try again in a few seconds (GET /health shows "
            f"the state of each dependency) [{type(exc).__name__}]"
        },
        headers={"Retry-After": "5"},
    )


# The one place a service's refusal (domain/errors.py) becomes an HTTP answer.
DOMAIN_STATUSES: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    QuotaExceeded: 429,
    Unavailable: 503,
}


def domain_answer(exc: DomainError) -> JSONResponse:
    """The answer to a service's refusal: its status, `detail` its text, and when to ask again if it says."""
    status = next(code for kind, code in DOMAIN_STATUSES.items() if isinstance(exc, kind))
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, QuotaExceeded) else None
    return JSONResponse(status_code=status, content={"detail": exc.detail}, headers=headers)


async def _domain_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return domain_answer(exc)


def install_error_handlers(app: FastAPI) -> None:
    from sqlalchemy.exc import InterfaceError, OperationalError

    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(DomainError, _domain_handler)
    app.add_exception_handler(RowBusy, _row_busy_handler)
    app.add_exception_handler(OperationalError, _database_unavailable_handler)
    app.add_exception_handler(InterfaceError, _database_unavailable_handler)
