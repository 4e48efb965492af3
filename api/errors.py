"""Errors as JSON a person can act on: what is wrong and how to fix it."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
