"""Errors as JSON a person can act on: what is wrong and how to fix it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def not_found(what: str) -> HTTPException:
    return HTTPException(status_code=404, detail=what)


def conflict(why: str) -> HTTPException:
    return HTTPException(status_code=409, detail=why)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "head", "units") reads better as "head.units"; the body itself is just "body".
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _validation_message(errors: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{_field_path(e.get('loc', ()))}: {str(e.get('msg', '')).removeprefix('Value error, ')}" for e in errors
    )


async def _validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    # Keep FastAPI's structured list for programs, and add one readable sentence for people.
    for error in errors:
        error.pop("url", None)
        error.pop("ctx", None)
    body = {"message": _validation_message(errors), "detail": jsonable_encoder(errors)}
    return JSONResponse(status_code=422, content=body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
