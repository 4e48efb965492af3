"""The OpenAPI document as client generators read it: short operation ids, and what is not JSON said as such.

A generator names each call after its operation id, and decodes each answer by its media type and schema: a
binary answer with no schema, or an event stream described as one JSON object, gives a call that returns
nothing useful or crashes on the first byte.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

# A file: bytes of the media type it is listed under. Generators map `format: binary` to bytes (a file object).
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def operation_id(route: APIRoute) -> str:
    """The route's name (its handler's name unless it gives another): `create_experiment`, where FastAPI's default
    appends the path and method (`create_experiment_experiments_post`). tests/test_contract.py checks they are
    unique, which FastAPI only warns about."""
    return route.name


def file_response(description: str, *media_types: str) -> dict[str, Any]:
    """A 200 whose body is a file of one of `media_types`, for `responses={200: file_response(...)}`."""
    return {"description": description, "content": {media_type: {"schema": BINARY} for media_type in media_types}}
