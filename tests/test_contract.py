"""The OpenAPI document is honest: every operation lists the errors it can answer, all in one schema."""

from __future__ import annotations

from typing import Any

import pytest

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
    if "multipart/form-data" in content:
        expected |= {"415", "429"}  # an upload is an image, and predictions are rate limited
    if method == "POST" and path in ("/experiments", "/sweeps", "/experiments/{experiment_id}/retry"):
        expected.add("429")  # the active-jobs quota
    if path.startswith(("/users", "/keys")):
        expected.add("403")
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
