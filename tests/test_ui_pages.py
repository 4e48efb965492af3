"""The dashboard's files and the API reference are served by the API itself, public, and with no CDN;
a checkpoint's listing says what input it expects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import app
from api.serving.model_contract import model_input
from api.ui import UI_DIR
from tests.seed import finish
from training.spec import DATASETS, Dataset

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/ui/"])
def test_pages_are_public_and_load_nothing_from_elsewhere(anonymous_client: TestClient, path: str) -> None:
    page = anonymous_client.get(path)
    assert page.status_code == 200
    assert not re.search(r"""(src|href)=["']https?://""", page.text), "a page must not load from another host"
    assets = [a or b for a, b in ASSET.findall(page.text)]
    assert assets
    for asset in assets:
        url = asset if asset.startswith("/") else f"/ui/{asset}"
        assert anonymous_client.get(url).status_code == 200, url


def test_the_dashboard_is_static_files_not_api_routes(anonymous_client: TestClient) -> None:
    assert not [p for p in app.openapi()["paths"] if p.startswith("/ui")]
    script = anonymous_client.get("/ui/js/main.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert anonymous_client.get("/ui", follow_redirects=False).status_code in (301, 307)
    assert anonymous_client.get("/ui/../config.py").status_code == 404


def test_vendored_libraries_carry_their_licenses() -> None:
    vendor = UI_DIR / "vendor"
    for library in ("uplot", "swagger-ui", "redoc"):
        assert (vendor / library / "LICENSE").is_file(), library
    assert (vendor / "README.md").read_text().count("npm") >= 3


def test_no_dashboard_code_puts_the_key_in_a_url() -> None:
    # The key travels in the Authorization header only: URLs end up in logs and in the browser's history.
    for script in Path(UI_DIR / "js").glob("*.js"):
        text = script.read_text()
        assert not re.search(r"[?&](key|api_key|token)=", text), script.name
        assert "EventSource" not in text.replace("EventSource cannot", ""), script.name


def test_a_checkpoint_listing_says_what_input_it_expects(client: TestClient) -> None:
    response = client.post("/experiments", json={"dataset": "mnist", "epochs": 1})
    experiment_id = int(response.json()["id"])
    finish(experiment_id)
    [artifact] = client.get(f"/experiments/{experiment_id}/artifacts").json()
    assert artifact["name"] == "best_model.h5"
    assert artifact["input_shape"] == [None, 28, 28]
    assert artifact["input_dtype"] == "float32"
    assert artifact["input_range"] == [0.0, 255.0]
    assert "do not divide by 255" in artifact["preprocessing"]


def test_the_input_contract_follows_the_dataset() -> None:
    cats = model_input(DATASETS[Dataset.CATS_VS_DOGS])
    assert cats.input_shape == [None, 150, 150, 3]
    assert "RGB" in cats.preprocessing
    assert model_input(DATASETS[Dataset.FASHION_MNIST]).input_shape == [None, 28, 28]


def _directives(policy: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (part.split() for part in policy.split(";") if part.strip())}


def _assert_browser_headers(response: Any) -> dict[str, list[str]]:
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    policy = _directives(response.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no other host
    assert policy["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["style-src"]
    return policy


PUBLIC_FILES = ["/ui/", "/ui/js/main.js", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"]


@pytest.mark.parametrize("path", PUBLIC_FILES)
def test_pages_and_their_files_send_the_browser_headers(anonymous_client: TestClient, path: str) -> None:
    response = anonymous_client.get(path)
    assert response.status_code == 200
    policy = _assert_browser_headers(response)
    if path != "/redoc":  # ReDoc's own exceptions are in api/http/browser_headers.py, for its page alone
        assert policy["style-src"] == ["'self'"]


def test_json_answers_send_the_browser_headers_too(client: TestClient, anonymous_client: TestClient) -> None:
    answers = [
        client.get("/experiments"),
        client.get("/health"),
        anonymous_client.get("/experiments"),  # a 401
        client.get("/experiments/999999"),  # a 404
        client.post("/experiments", json={"dataset": "mnist", "x": "y" * 2**21}),  # a 413 from the size cap
    ]
    assert [a.status_code for a in answers] == [200, 200, 401, 404, 413]
    for answer in answers:
        assert answer.headers["content-type"].startswith("application/json")
        _assert_browser_headers(answer)


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect", "/redoc", "/ui/"])
def test_pages_carry_no_inline_script_or_style(anonymous_client: TestClient, path: str) -> None:
    # The policy would refuse them: a page that has any is broken in the browser.
    page = anonymous_client.get(path).text
    assert not INLINE_SCRIPT.search(page), page
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"\son[a-z]+=", page), "an inline event handler is an inline script"


def test_the_dashboard_reads_a_queued_jobs_standing_where_the_api_gives_it(client: TestClient) -> None:
    # The fields the pages show a queued job's place by are the document's, and a list carries them: the list page
    # shows them as listed (it once read each queued row on its own, a request per row every few seconds).
    fields = app.openapi()["components"]["schemas"]["ExperimentRead"]["properties"]
    scripts = {name: (UI_DIR / "js" / name).read_text() for name in ("dom.js", "list.js", "experiment.js")}
    for field in ("queue_position", "estimated_start"):
        assert field in fields and "while queued" in fields[field]["description"].lower()
        assert f"e.{field}" in scripts["dom.js"], field
    assert "api(`/experiments/${e.id}`)" not in scripts["list.js"]
    assert "standing(" in scripts["list.js"] and "standing(" in scripts["experiment.js"]
    response = client.post("/experiments", json={"dataset": "mnist", "epochs": 1})
    listed = client.get("/experiments", params={"status": "queued", "limit": 500}).json()["items"]
    [row] = [e for e in listed if e["id"] == response.json()["id"]]
    assert row["queue_position"] == client.get(f"/experiments/{row['id']}").json()["queue_position"] >= 1
    assert isinstance(client.get(f"/experiments/{row['id']}").json()["queue_position"], int)


MARKUP_SINKS = re.compile(r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|createContextualFragment")


def test_no_dashboard_code_writes_markup_from_strings() -> None:
    # Names, class names and descriptions are users' words: the pages build elements (dom.js h), whose text is text.
    for script in Path(UI_DIR / "js").glob("*.js"):
        assert not MARKUP_SINKS.search(script.read_text()), script.name


def test_the_datasets_pages_are_served_and_linked(anonymous_client: TestClient) -> None:
    for module in ("datasets.js", "upload.js"):
        script = anonymous_client.get(f"/ui/js/{module}")
        assert script.status_code == 200, module
        assert "javascript" in script.headers["content-type"]
        _assert_browser_headers(script)
    index = anonymous_client.get("/ui/").text
    assert '<a href="#/datasets">Datasets</a>' in index
    main = anonymous_client.get("/ui/js/main.js").text
    assert 'from "./datasets.js"' in main and "renderDataset(view, parts[1])" in main


def test_the_datasets_pages_read_fields_the_api_documents() -> None:
    # What the pages show is the document's: a renamed field would leave an empty column, not an error.
    document = app.openapi()
    schemas, paths = document["components"]["schemas"], document["paths"]
    scripts = {name: (UI_DIR / "js" / name).read_text() for name in ("datasets.js", "upload.js", "submit.js")}
    listed = {"name", "version", "builtin", "status", "visibility", "class_names", "input_shape"}
    assert listed <= set(schemas["DatasetRead"]["properties"])
    for field in listed - {"name"}:
        assert f"d.{field}" in scripts["datasets.js"] + scripts["submit.js"], field
    version = {"counts", "errors", "images", "duplicate_of", "held_out", "test_fraction", "seed", "options"}
    assert version <= set(schemas["DatasetVersionRead"]["properties"])
    for field in version:
        assert f"v.{field}" in scripts["datasets.js"] or f"version.{field}" in scripts["upload.js"], field
    assert {"entry", "reason"} == set(schemas["DatasetError"]["properties"])
    assert "post" in paths["/datasets"] and "get" in paths["/datasets/{name}"]
    assert "delete" in paths["/datasets/{name}/{version}"]
    # The upload's options are the route's query parameters, by name.
    query = {p["name"] for p in paths["/datasets"]["post"]["parameters"] if p["in"] == "query"}
    assert query == {"name", "visibility", "image_size", "fit", "color_mode", "test_fraction", "seed"}
    for option in query - {"name"}:
        assert f'"{option}"' in scripts["upload.js"], option


def test_the_upload_sends_the_key_in_a_header_and_the_samples_are_read_with_it() -> None:
    # An <img src> or a form post could not send the key: the upload is an XMLHttpRequest with the header, and the
    # sample grid is fetched with it and shown from a blob: URL (which the CSP's img-src allows).
    api_js = (UI_DIR / "js" / "api.js").read_text()
    assert "new XMLHttpRequest()" in api_js and "setRequestHeader" in api_js and "authHeaders(" in api_js
    datasets_js = (UI_DIR / "js" / "datasets.js").read_text()
    assert "samples.png?version=" in datasets_js and "URL.createObjectURL" in datasets_js
    assert not re.search(r"src:\s*`?/datasets", datasets_js)
    from api.http.browser_headers import POLICY

    assert "blob:" in POLICY["img-src"].split()


def test_the_sharing_and_the_image_browser_use_routes_and_fields_the_api_documents(
    anonymous_client: TestClient,
) -> None:
    document = app.openapi()
    schemas, paths = document["components"]["schemas"], document["paths"]
    shares_js = (UI_DIR / "js" / "shares.js").read_text()
    images_js = (UI_DIR / "js" / "images.js").read_text()
    datasets_js = (UI_DIR / "js" / "datasets.js").read_text()
    for module in ("shares.js", "images.js"):
        assert anonymous_client.get(f"/ui/js/{module}").status_code == 200, module
        assert f'from "./{module}"' in datasets_js, module
    # Sharing: the list, then PUT and DELETE of one user's share; an admin's pick comes from GET /users.
    assert "get" in paths["/datasets/{name}/shares"]
    assert {"put", "delete"} <= set(paths["/datasets/{name}/shares/{user_id}"])
    assert "get" in paths["/users"]
    assert 'datasetPath(name, "/shares")' in shares_js and "datasetPath(name, `/shares/${id}`)" in shares_js
    assert '"PUT"' in shares_js and '"DELETE"' in shares_js and 'api("/users")' in shares_js
    for field in schemas["DatasetShareRead"]["properties"]:
        assert f"s.{field}" in shares_js, field
    # The browser: a page of one class of one split, by the route's own query parameters and answer's fields.
    query = {p["name"] for p in paths["/datasets/{name}/images"]["get"]["parameters"] if p["in"] == "query"}
    assert query == {"version", "split", "class", "offset", "limit"}
    for parameter in query:
        assert re.search(rf"\b{parameter}:", images_js), parameter
    page = schemas["DatasetImagePage"]["properties"]
    for field in ("items", "total", "next_offset"):
        assert field in page and f"page.{field}" in images_js, field
    item = schemas["DatasetImageRead"]["properties"]
    for field in ("index", "split", "class", "url"):
        assert field in item and f"item.{field}" in images_js, field
    # Each image is read with the key and shown from a blob: URL; never an <img src> naming the route.
    assert "api(item.url, { raw: true })" in images_js and "URL.createObjectURL" in images_js
    assert not re.search(r"src:\s*`?/datasets", images_js)
