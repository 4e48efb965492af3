"""Ownership: a user sees and acts on their own work only; another user's is a 404 like a missing one.

The route-table walks fail when a new route forgets the check: every route with an experiment or
sweep id must answer 404 to another user, and every route but the public ones must answer 401 without
a key.
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import app
from models import DatasetVersion, Experiment
from models.db import session_scope
from tests.seed import finish, png
from tests.support import ROOT
from training.results import CHECKPOINT_NAME

PUBLIC = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
SAMPLE_VALUES = {
    "name": CHECKPOINT_NAME,
    "metric": "val_accuracy",
    "dataset": "mnist",
    "user_id": "1",
    "key_id": "1",
    "format": "h5",  # the checkpoint itself: the seeded one is not a network that exports
}


def submit(client: TestClient, **fields: Any) -> int:
    response = client.post("/experiments", json={"dataset": "mnist", "epochs": 2, **fields})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def create_sweep(client: TestClient) -> dict[str, Any]:
    body = {"base": {"dataset": "mnist", "epochs": 2}, "grid": {"optimizer": ["adam", "sgd"]}}
    response = client.post("/sweeps", json=body)
    assert response.status_code == 202, response.text
    sweep: dict[str, Any] = response.json()
    return sweep


@pytest.fixture
def admins_work(client: TestClient) -> dict[str, int]:
    """A succeeded experiment with everything a report needs, and a sweep with epochs, both the admin's."""
    experiment_id = submit(client)
    finish(experiment_id)
    sweep = create_sweep(client)
    for row in sweep["experiments"]:
        finish(row["id"])
    return {"experiment_id": experiment_id, "sweep_id": sweep["id"]}


def api_routes(table: list[Any]) -> list[APIRoute]:
    """Every APIRoute of a route table, including those of included routers."""
    found = []
    for route in table:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):  # FastAPI keeps an included router as one entry
            found += api_routes(route.original_router.routes)
    return found


def routes() -> list[tuple[str, str, APIRoute]]:
    return sorted(
        ((method, route.path, route) for route in api_routes(app.routes) for method in route.methods or ()),
        key=lambda item: (item[1], item[0]),
    )


def test_the_walk_sees_every_operation_of_the_openapi_document() -> None:
    documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    walked = {(m, p) for m, p, _route in routes()}
    assert documented <= walked


def fill(path: str, values: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), SAMPLE_VALUES.get(m.group(1), "1"))), path)


def upload_parts(method: str, route: APIRoute) -> list[str]:
    """The multipart parts the OpenAPI document gives the operation's body (declared or documented by hand)."""
    document = app.openapi()
    body = document["paths"][route.path][method.lower()].get("requestBody", {})
    schema = body.get("content", {}).get("multipart/form-data", {}).get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    return list(schema.get("properties", {}))


def call(client: TestClient, method: str, route: APIRoute, path: str, headers: dict[str, str] | None = None) -> Any:
    # Every body of these routes is an upload (one image, or several): send a valid image in each part, so
    # the answer is about who asks, not about a missing body.
    files = [(part, ("digit.png", png(), "image/png")) for part in upload_parts(method, route)]
    return client.request(method, path, files=files or None, headers=headers)


# Routes for admins only answer everyone else 403 whatever the id, so they reveal nothing about ids either.
ADMIN_ONLY = {("PUT", "/experiments/{experiment_id}/priority")}
OWNED_ROUTES = [
    (method, path, route)
    for method, path, route in routes()
    if ("{experiment_id}" in path or "{sweep_id}" in path) and (method, path) not in ADMIN_ONLY
]


def test_the_walk_covers_every_kind_of_owned_route() -> None:
    # A walk over nothing passes vacuously: make sure the table really has the routes this file is about.
    paths = {path for _method, path, _route in OWNED_ROUTES}
    assert len(OWNED_ROUTES) >= 15
    for needed in ("predictions", "tensorboard", "plots", "artifacts", "cancel", "retry", "evaluation", "metrics"):
        assert any(needed in path for path in paths), needed


@pytest.mark.parametrize(("method", "path", "route"), OWNED_ROUTES, ids=[f"{m} {p}" for m, p, _ in OWNED_ROUTES])
def test_every_owned_route_is_404_for_another_user(
    client: TestClient, other_client: TestClient, admins_work: dict[str, int], method: str, path: str, route: APIRoute
) -> None:
    url = fill(path, admins_work)
    if method == "GET":
        # The owner gets it, so a 404 for the other user is about ownership, not a bad path.
        assert client.get(url).status_code == 200, url
    response = call(other_client, method, route, url)
    assert response.status_code == 404, (url, response.status_code, response.text)
    # The same words as for an id that does not exist: existence is not leaked.
    missing = call(other_client, method, route, fill(path, {"experiment_id": 10**9, "sweep_id": 10**9}))
    assert missing.status_code == 404
    assert response.json()["detail"] == missing.json()["detail"].replace(str(10**9), str(_id_in(url)))


def _id_in(url: str) -> int:
    return int(re.findall(r"/(\d+)", url)[0])


MODEL_ROUTES = [(method, path, route) for method, path, route in routes() if path.startswith("/models/{")]


@pytest.fixture
def admins_model(client: TestClient, admins_work: dict[str, int]) -> dict[str, Any]:
    """A private model of the admin's, with a version and a production alias: every model route reaches it."""
    assert client.post("/models", json={"name": "digits"}).status_code == 201
    registered = client.post("/models/digits/versions", json={"experiment_id": admins_work["experiment_id"]})
    assert registered.status_code == 201, registered.text
    assert client.put("/models/digits/aliases/production", json={"version": 1}).status_code == 200
    return {"name": "digits", "ref": "digits", "version": 1, "alias": "production"}


def test_the_model_walk_covers_every_model_route() -> None:
    paths = {path for _method, path, _route in MODEL_ROUTES}
    for needed in ("versions", "aliases", "history", "card", "predictions"):
        assert any(needed in path for path in paths), needed


@pytest.mark.parametrize(("method", "path", "route"), MODEL_ROUTES, ids=[f"{m} {p}" for m, p, _ in MODEL_ROUTES])
def test_every_route_of_a_private_model_is_404_for_another_user(
    client: TestClient, other_client: TestClient, admins_model: dict[str, Any], method: str, path: str, route: APIRoute
) -> None:
    url = fill(path, admins_model)
    if method == "GET":
        assert client.get(url).status_code == 200, url
    body = {"version": 1} if method == "PUT" else {"experiment_id": 1} if path.endswith("/versions") else None
    response = other_client.request(method, url, json=body) if body else call(other_client, method, route, url)
    assert response.status_code == 404, (url, response.status_code, response.text)
    missing_url = fill(path, {**admins_model, "name": "missing", "ref": "missing"})
    missing = (
        other_client.request(method, missing_url, json=body) if body else call(other_client, method, route, missing_url)
    )
    assert missing.status_code == 404
    assert response.json()["detail"] == missing.json()["detail"].replace("'missing'", "'digits'")
    if method != "GET":  # and nothing changed
        assert client.get("/models/digits").json()["aliases"] == {"production": 1}


DATASET_ROUTES = [
    (method, path, route)
    for method, path, route in routes()
    if path.startswith(("/datasets/{name}", "/datasets/{dataset}"))
]


@pytest.fixture
def admins_dataset(client: TestClient) -> dict[str, Any]:
    """A private uploaded dataset of the admin's, prepared (so that its images answer its owner)."""
    from tests.upload_archives import class_files, write_zip
    from worker.datasets import prepare

    with tempfile.TemporaryDirectory() as folder:
        archive = write_zip(Path(folder) / "data.zip", class_files({"cat": 2, "dog": 3}, size=(8, 8)))
        response = client.post("/datasets?name=admins-data", files={"file": ("data.zip", archive.read_bytes())})
    assert response.status_code == 202, response.text
    with session_scope() as session:
        row_id = session.scalars(select(DatasetVersion.id).where(DatasetVersion.name == "admins-data")).one()
    assert prepare(row_id) == "ready"
    return {"name": "admins-data", "dataset": "admins-data", "version": 1, "split": "train", "index": 0, "user_id": 1}


def dataset_call(client: TestClient, method: str, route: APIRoute, path: str) -> Any:
    if method == "PUT" and path.endswith("/default-model"):  # a valid body: the answer is about who asks
        return client.put(path, json={"model": "digits"})
    return call(client, method, route, path)


def test_the_dataset_walk_covers_every_dataset_route() -> None:
    walked = {(method, path) for method, path, _route in DATASET_ROUTES}
    assert {
        ("GET", "/datasets/{name}"),
        ("DELETE", "/datasets/{name}/{version}"),
        ("GET", "/datasets/{name}/samples.png"),
        ("GET", "/datasets/{name}/images"),
        ("GET", "/datasets/{name}/images/{split}/{index}.png"),
        ("GET", "/datasets/{name}/versions/{version}/events"),
    } <= walked
    assert ("POST", "/datasets/{dataset}/predictions") in walked


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/experiments", {"dataset": "admins-data"}),
        ("/experiments", {"dataset": "admins-data@1", "epochs": 1}),
        ("/sweeps", {"base": {"dataset": "admins-data"}, "grid": {"optimizer": ["adam", "sgd"]}}),
        ("/networks/check", {"network": "mlp", "dataset": "admins-data"}),
    ],
)
def test_a_spec_naming_another_users_private_dataset_is_404_as_a_missing_one(
    client: TestClient, other_client: TestClient, admins_dataset: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    before = other_client.get("/experiments").json()["total"]
    response = other_client.post(path, json=body)
    missing = other_client.post(path, json=json.loads(json.dumps(body).replace("admins-data", "missing")))
    assert (response.status_code, missing.status_code) == (404, 404), response.text
    assert response.json()["detail"] == missing.json()["detail"].replace("'missing'", "'admins-data'")
    assert other_client.get("/experiments").json()["total"] == before


@pytest.mark.parametrize(("method", "path", "route"), DATASET_ROUTES, ids=[f"{m} {p}" for m, p, _ in DATASET_ROUTES])
def test_every_route_of_a_private_dataset_is_404_for_another_user(
    client: TestClient,
    other_client: TestClient,
    admins_dataset: dict[str, Any],
    method: str,
    path: str,
    route: APIRoute,
) -> None:
    url = fill(path, admins_dataset)
    if method == "GET":
        assert client.get(url).status_code == 200, url
    response = dataset_call(other_client, method, route, url)
    assert response.status_code == 404, (url, response.status_code, response.text)
    missing_url = fill(path, {**admins_dataset, "name": "missing", "dataset": "missing"})
    missing = dataset_call(other_client, method, route, missing_url)
    assert missing.status_code == 404
    assert response.json()["detail"] == missing.json()["detail"].replace("'missing'", "'admins-data'")
    assert [v["version"] for v in client.get("/datasets/admins-data").json()["versions"]] == [1]  # nothing changed
    # Nor does the list show it to them.
    assert "admins-data" not in {d["name"] for d in other_client.get("/datasets").json()}


PROTECTED_ROUTES = [(method, path, route) for method, path, route in routes() if path not in PUBLIC]


@pytest.mark.parametrize(
    ("method", "path", "route"), PROTECTED_ROUTES, ids=[f"{m} {p}" for m, p, _ in PROTECTED_ROUTES]
)
def test_every_route_but_the_public_ones_is_401_without_a_key(
    anonymous_client: TestClient, admins_work: dict[str, int], method: str, path: str, route: APIRoute
) -> None:
    response = call(anonymous_client, method, route, fill(path, admins_work))
    assert response.status_code == 401, (path, response.text)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


UNKNOWN_KEY = {"Authorization": "Bearer epk_" + "x" * 43}


@pytest.mark.parametrize(
    ("method", "path", "route"), PROTECTED_ROUTES, ids=[f"{m} {p}" for m, p, _ in PROTECTED_ROUTES]
)
def test_every_route_but_the_public_ones_is_401_with_an_unknown_key_before_validating_the_request(
    anonymous_client: TestClient, admins_work: dict[str, int], method: str, path: str, route: APIRoute
) -> None:
    # With its body and without: a route that gets the caller from a dependency and one that verifies the key in
    # its own handler (the prediction routes) both refuse an invalid key before anything else, a 422 included.
    url = fill(path, admins_work)
    without_body = anonymous_client.request(method, url, headers=UNKNOWN_KEY)
    for response in (call(anonymous_client, method, route, url, UNKNOWN_KEY), without_body):
        assert response.status_code == 401, (path, response.text)
        assert "not valid" in response.json()["detail"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/health", "/openapi.json", "/docs", "/redoc"])
def test_public_routes_need_no_key(anonymous_client: TestClient, path: str) -> None:
    assert anonymous_client.get(path).status_code == 200


def test_lists_show_only_your_own_work(client: TestClient, other_client: TestClient) -> None:
    mine = submit(other_client)
    admins = submit(client)
    sweep = create_sweep(client)
    listed = other_client.get("/experiments").json()
    assert [e["id"] for e in listed["items"]] == [mine] and listed["total"] == 1
    assert other_client.get("/sweeps").json() == []
    assert other_client.get(f"/experiments?sweep_id={sweep['id']}").json()["total"] == 0
    # An admin sees everyone's.
    assert {e["id"] for e in client.get("/experiments").json()["items"]} >= {mine, admins}
    assert client.get(f"/experiments/{mine}").status_code == 200


def test_a_sweep_owns_its_experiments(client: TestClient, other_client: TestClient) -> None:
    sweep = create_sweep(other_client)
    for row in sweep["experiments"]:
        assert other_client.get(f"/experiments/{row['id']}").status_code == 200
    with session_scope() as session:
        owners = set(session.scalars(select(Experiment.owner_id).where(Experiment.sweep_id == sweep["id"])))
    assert len(owners) == 1
    me = other_client.get("/me").json()
    assert owners == {me["id"]}


def test_another_users_experiment_cannot_be_cancelled_or_retried(client: TestClient, other_client: TestClient) -> None:
    queued = submit(client)
    assert other_client.post(f"/experiments/{queued}/cancel").status_code == 404
    assert client.get(f"/experiments/{queued}").json()["status"] == "queued"
    assert client.post(f"/experiments/{queued}/cancel").status_code == 200
    assert other_client.post(f"/experiments/{queued}/retry").status_code == 404
    assert client.get(f"/experiments/{queued}").json()["status"] == "cancelled"


def test_dataset_predictions_use_the_callers_best_model(client: TestClient, other_client: TestClient) -> None:
    finish(submit(client))
    image = {"file": ("digit.png", png(), "image/png")}
    response = other_client.post("/datasets/mnist/predictions", files=image)
    assert response.status_code == 404, response.text
    assert "no succeeded experiment on mnist" in response.json()["detail"]
    datasets = {d["name"]: d for d in other_client.get("/datasets").json()}
    assert datasets["mnist"]["best_experiment_id"] is None
    admin_view = {d["name"]: d for d in client.get("/datasets").json()}
    assert admin_view["mnist"]["best_experiment_id"] is not None


@pytest.mark.parametrize("bad_id", ["0", "-1", str(2**31), str(70771313422288), str(2**63), str(2**64 + 1), "9" * 40])
@pytest.mark.parametrize(
    "template", ["/experiments/{}", "/experiments/{}/metrics", "/sweeps/{}", "/sweeps/{}/tensorboard"]
)
def test_ids_out_of_range_are_404(client: TestClient, template: str, bad_id: str) -> None:
    response = client.get(template.format(bad_id))
    assert response.status_code == 404, response.text
    assert "does not exist" in response.json()["detail"]


def test_an_id_that_is_not_a_number_is_422(client: TestClient) -> None:
    assert client.get("/experiments/seven").status_code == 422


def test_routers_do_not_import_each_other() -> None:
    # Lookups shared by routers live in domain/access.py (and submission in domain/submission.py): a router that
    # imports another is how a second, unchecked way to find an experiment would creep back in.
    offenders = {}
    for path in sorted((ROOT / "api" / "routers").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        routers = sorted(name for name in imported if name.startswith("api.routers"))
        if routers:
            offenders[path.name] = routers
    assert offenders == {}
