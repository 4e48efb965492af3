"""The OpenAPI document is honest: every operation lists the errors it can answer, all in one schema."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute

from api.http.openapi import BINARY
from api.main import app

PUBLIC = {"/health"}
ERROR_REF = "#/components/schemas/ErrorRead"


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    ]


OPERATIONS = operations()
IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]


def expected_statuses(method: str, path: str, operation: dict[str, Any]) -> set[str]:
    expected: set[str] = set()
    if path not in PUBLIC:
        expected |= {"401", "503"}  # the key is checked in the database, which may be down
    if any(p["in"] == "path" and p["name"].endswith("_id") for p in operation.get("parameters", [])):
        expected.add("404")
    if operation.get("parameters") or "requestBody" in operation:
        expected.add("422")
    if "requestBody" in operation:
        expected |= {"400", "413"}  # a body may not parse, and the body cap applies to every request body
    content = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content and path.endswith("/predictions"):
        expected |= {"415", "429"}  # an upload is an image, and predictions are rate limited
    if method == "POST" and path in ("/experiments", "/sweeps", "/experiments/{experiment_id}/retry"):
        expected.add("429")  # the active-jobs quota
    if path.startswith(("/users", "/keys")) and not path.endswith("/usage"):
        expected.add("403")  # admins only; a user's own usage is theirs (another user's is a 404)
    if path.endswith("/priority"):
        expected.add("403")  # admins set priorities
    return expected


def test_there_is_one_error_schema() -> None:
    schemas = app.openapi()["components"]["schemas"]
    assert "ErrorRead" in schemas
    assert "HTTPValidationError" not in schemas, "a route still advertises FastAPI's default 422 body"


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_every_operation_lists_the_errors_it_can_answer(method: str, path: str, operation: dict[str, Any]) -> None:
    missing = expected_statuses(method, path, operation) - set(operation["responses"])
    assert not missing, f"{method} {path} does not document {sorted(missing)}"


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_every_error_uses_the_one_schema(method: str, path: str, operation: dict[str, Any]) -> None:
    for status, response in operation["responses"].items():
        if not status.startswith(("4", "5")) or (path in PUBLIC and status == "503"):
            continue
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        assert schema.get("$ref") == ERROR_REF, f"{method} {path} {status}: {schema}"
        assert response.get("description"), f"{method} {path} {status} has no description"


def test_the_key_is_in_the_document() -> None:
    schemes = app.openapi()["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())


# --- what client generators read ------------------------------------------------------------------------------


def route_names(table: list[Any]) -> list[str]:
    names = []
    for route in table:
        if isinstance(route, APIRoute):
            names.append(route.name)
        elif hasattr(route, "original_router"):  # FastAPI keeps an included router as one entry
            names += route_names(route.original_router.routes)
    return names


def test_operation_ids_are_the_route_names_and_unique() -> None:
    ids = [operation["operationId"] for _method, _path, operation in OPERATIONS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert set(ids) <= set(route_names(app.routes))  # `create_experiment`, not `create_experiment_experiments_post`
    assert "create_experiment" in ids


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_every_answer_that_is_not_json_says_what_it_is(method: str, path: str, operation: dict[str, Any]) -> None:
    # A generator decodes by media type and schema: a file with no schema came back as nothing, and the event
    # stream whose schema was one JSON event crashed the call on its first line.
    for status, response in operation["responses"].items():
        for media_type, content in response.get("content", {}).items():
            if media_type == "application/json":
                continue
            schema, where = content.get("schema", {}), f"{method} {path} {status} {media_type}"
            if media_type == "text/event-stream":  # the body is text; `itemSchema` describes one event
                assert "type" not in schema and content["itemSchema"]["type"] == "object", where
                continue
            expected = {"type": "string"} if media_type.startswith("text/") else BINARY
            assert {key: schema.get(key) for key in expected} == expected, where


def test_the_event_streams_are_text_and_the_downloads_bytes() -> None:
    paths = app.openapi()["paths"]
    for path in (
        "/experiments/{experiment_id}/events",
        "/sweeps/{sweep_id}/events",
        "/datasets/{name}/versions/{version}/events",
    ):
        assert list(paths[path]["get"]["responses"]["200"]["content"]) == ["text/event-stream"]
    downloads = {
        "/experiments/{experiment_id}/artifacts/{name}": "application/x-hdf5",
        "/experiments/{experiment_id}/plots/history.png": "image/png",
        "/sweeps/{sweep_id}/tensorboard": "application/gzip",
    }
    for path, media_type in downloads.items():
        assert paths[path]["get"]["responses"]["200"]["content"][media_type]["schema"] == BINARY
