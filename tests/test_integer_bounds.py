"""Every integer a client can send has bounds, and a value past them is a 4xx, never a 500.

A bare `int` field took 10**30 and the database raised on it (SQLite: OverflowError; PostgreSQL: out of range for
INTEGER). The walk below finds every integer of every operation in the OpenAPI document (path, query and JSON
body, nested objects included) and sends it values around 2^31, 2^63 and 10^30, either sign, with the rest of the
request valid; in-process, so a few hundred requests take a few seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.main import app
from api.schemas.experiments import ExperimentCreate
from models.specs import experiment_from_spec, spec_of
from tests.seed import png
from tests.support import ADMIN, bearer, new_key
from training.spec import DATASETS, Dataset

DOCUMENT = app.openapi()
EDGES = [2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -1, -(2**31) - 1, -(2**63) - 1, -(10**30)]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    return schema


def non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema itself, or the first of its anyOf that is not null (an optional field)."""
    schema = resolve(schema)
    for option in schema.get("anyOf", []):
        if resolve(option).get("type") != "null":
            return resolve(option)
    return schema


def minimal(schema: dict[str, Any]) -> Any:
    """A small valid instance: the documented example or default if any, else the least the type allows."""
    schema = non_null(schema)
    for key in ("examples", "enum"):
        if schema.get(key):
            return schema[key][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: minimal(properties[name]) for name in schema.get("required", [])}
    if kind == "array":
        return [minimal(schema.get("items", {}))] * schema.get("minItems", 0)
    return {"integer": schema.get("minimum", 1), "number": 1.0, "boolean": False}.get(str(kind), "a")


@dataclass(frozen=True)
class Target:
    """One integer a request carries: where it goes, and its documented range."""

    method: str
    path: str
    where: str  # "path", "query" or "body"
    field: tuple[str, ...]  # the parameter's name, or the JSON path into the body
    low: int | None
    high: int | None

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.where}:{'.'.join(self.field)}"


def bound(schema: dict[str, Any], key: str) -> int | None:
    # FastAPI's document model turns the bounds of body fields into floats (1000.0); all of them are below 2^53.
    return None if schema.get(key) is None else int(schema[key])


Field = tuple[str, ...]  # a parameter's name, or a JSON path into a body


def integers_in(schema: dict[str, Any], field: Field = ()) -> Iterator[tuple[Field, dict[str, Any]]]:
    schema = non_null(schema)
    if schema.get("type") == "integer":
        yield field, schema
    for name, child in schema.get("properties", {}).items():
        yield from integers_in(child, (*field, name))


def targets() -> list[Target]:
    found = []
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = non_null(parameter["schema"])
                if schema.get("type") == "integer":
                    low, high = bound(schema, "minimum"), bound(schema, "maximum")
                    found.append(Target(method, path, parameter["in"], (parameter["name"],), low, high))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            for field, schema in integers_in(body.get("schema", {})):
                found.append(Target(method, path, "body", field, bound(schema, "minimum"), bound(schema, "maximum")))
    return found


TARGETS = targets()


def request_for(target: Target, value: int) -> dict[str, Any]:
    """A request that is valid but for `value` in the target's place."""
    operation = DOCUMENT["paths"][target.path][target.method]
    path_values: dict[str, Any] = {}
    query: dict[str, Any] = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            path_values[parameter["name"]] = minimal(parameter["schema"])
    location = {"path": path_values, "query": query}.get(target.where)
    if location is not None:
        location[target.field[0]] = value
    url = re.sub(r"\{(\w+)\}", lambda m: str(path_values[m.group(1)]), target.path)
    request: dict[str, Any] = {"method": target.method.upper(), "url": url, "params": query}
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        schema = content["application/json"]["schema"]
        body = minimal(schema)
        if target.where == "body":
            node, node_schema = body, non_null(schema)
            for name in target.field[:-1]:  # an optional object on the way (head) is made, with its required fields
                node_schema = non_null(node_schema["properties"][name])
                node = node.setdefault(name, minimal(node_schema))
            node[target.field[-1]] = value
        request["json"] = body
    elif "multipart/form-data" in content:  # an upload: a valid image in each part, so the answer is about the id
        parts = non_null(content["multipart/form-data"]["schema"]).get("properties", {})
        request["files"] = [(part, ("digit.png", png(), "image/png")) for part in parts]
    return request


@pytest.fixture
def api(db: str, broker_url: str) -> Iterator[TestClient]:
    """The app in-process with an admin's key, answering a server error as a 500 rather than raising it."""
    with TestClient(app, headers=bearer(new_key(ADMIN, admin=True)), raise_server_exceptions=False) as client:
        yield client


def test_every_integer_a_client_sends_has_both_bounds() -> None:
    unbounded = [str(t) for t in TARGETS if t.low is None or t.high is None]
    assert not unbounded, "declare a range with training.bounds.Between (or a path id with api.http.params.id_path)"
    assert len(TARGETS) > 30  # ids in ~25 paths, pages, spec fields, quotas: a walk that found none would pass


@pytest.mark.parametrize("target", TARGETS, ids=str)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.sampled_from(EDGES) | st.integers(min_value=2**31) | st.integers(max_value=-1))
@example(value=10**30)
@example(value=2**63)
@example(value=2**31)
@example(value=-(2**63) - 1)
def test_an_integer_out_of_range_is_refused_with_a_4xx(api: TestClient, target: Target, value: int) -> None:
    response = api.request(**request_for(target, value))
    assert response.status_code < 500, f"{target} = {value}: {response.status_code} {response.text[:500]}"
    assert target.low is not None and target.high is not None
    if target.low <= value <= target.high:
        return  # in range (an offset of 2^31): any answer but a server error
    if target.where == "path":
        # An id no row can have is a resource that does not exist (api/http/params.py says why not a 422).
        assert response.status_code == 404, f"{target} = {value}: {response.text[:500]}"
        return
    assert response.status_code == 422, f"{target} = {value}: {response.text[:500]}"
    message = response.json()["message"]
    assert ".".join(target.field) in message and str(target.high) in message, message


@pytest.mark.parametrize(
    "sweep",
    [
        {"base": {"dataset": "mnist", "train_size": 10**30}, "grid": {"optimizer": ["adam"]}},
        {"base": {"dataset": "mnist"}, "grid": {"train_size": [100, 2**63]}},
        {"base": {"dataset": "mnist"}, "grid": {"variants": [{"epochs": 10**30}]}},
    ],
    ids=["base", "grid", "variants"],
)
def test_integers_inside_a_sweeps_free_form_spec_are_bounded_too(api: TestClient, sweep: dict[str, Any]) -> None:
    # base and grid are free-form objects in the document (no integer there to walk): each expands into a spec.
    response = api.post("/sweeps", json=sweep)
    assert response.status_code == 422, response.text
    assert "less than or equal to" in response.json()["detail"]


def test_train_size_is_bounded_by_the_datasets_training_split(api: TestClient) -> None:
    response = api.post("/experiments", json={"dataset": "cats_vs_dogs", "train_size": 2001})
    assert response.status_code == 422, response.text
    assert "train_size must be from 1 to 2000 for cats_vs_dogs" in response.json()["message"]
    assert api.post("/experiments", json={"dataset": "cats_vs_dogs", "train_size": 2000}).status_code == 202


def test_a_stored_train_size_past_the_split_still_runs_on_the_whole_split() -> None:
    # Rows written before the bound (SQLite took up to 2^63 - 1) are read back as what training did with them.
    spec = ExperimentCreate(dataset=Dataset.MNIST, train_size=500)
    row = experiment_from_spec(spec)
    row.train_size = 2**40
    assert spec_of(row).train_size == DATASETS[Dataset.MNIST].train_examples
    row.train_size = 500
    assert spec_of(row).train_size == 500
