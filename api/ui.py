"""The browser side: the dashboard at /ui/ and the API reference at /docs and /redoc, all served offline.

Everything here is public, like the reference always was: a page holds no data, and every data call the
dashboard makes sends the API key the person typed. The static files are a Starlette mount, not API
routes, so they stay out of the OpenAPI document and out of the route walks of the tests. Swagger UI and
ReDoc come from the vendored copies under api/ui/vendor/ instead of a CDN, so the reference works on a
machine with no internet access (FastAPI's documented recipe for self-hosted docs assets).

The reference pages are written here rather than by FastAPI's get_swagger_ui_html and get_redoc_html: those
start the libraries from inline scripts and styles, which the Content-Security-Policy (api/http/browser_headers.py)
refuses. What they inline lives in api/ui/reference/ instead, and the settings travel in a JSON data block.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent / "ui"
VENDOR = "/ui/vendor"
REFERENCE = "/ui/reference"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
FAVICON = f"{VENDOR}/swagger-ui/favicon-32x32.png"


def json_data_block(element_id: str, value: Any) -> str:
    """A <script type="application/json"> block: data for a script file, never run, so the CSP lets it be.

    `<`, `>` and `&` are written as JSON escapes, so no value can close the block or open markup.
    """
    text = json.dumps(jsonable_encoder(value))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'


def swagger_ui_page(openapi_url: str, title: str) -> str:
    config = {
        **swagger_ui_default_parameters,
        "url": openapi_url,
        "oauth2RedirectPath": OAUTH2_REDIRECT,
        # No online validator badge: it would send the document to validator.swagger.io.
        "validatorUrl": None,
    }
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="{VENDOR}/swagger-ui/swagger-ui.css">
<link rel="icon" href="{FAVICON}">
</head>
<body>
<div id="swagger-ui"></div>
{json_data_block("swagger-ui-config", config)}
<script src="{VENDOR}/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{REFERENCE}/swagger-init.js"></script>
</body>
</html>
"""


def redoc_page(openapi_url: str, title: str) -> str:
    # ReDoc reads its options from the element's attributes: no script of ours is needed to start it.
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="{REFERENCE}/redoc.css">
<link rel="icon" href="{FAVICON}">
</head>
<body>
<redoc spec-url="{escape(openapi_url)}"></redoc>
<script src="{VENDOR}/redoc/redoc.standalone.js"></script>
</body>
</html>
"""


OAUTH2_REDIRECT_PAGE = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Swagger UI: OAuth2 Redirect</title></head>
<body><script src="{REFERENCE}/oauth2-redirect.js"></script></body>
</html>
"""


def install_ui(app: FastAPI) -> None:
    """Mount the dashboard and serve /docs and /redoc from vendored files; needs docs_url=None, redoc_url=None."""
    assert app.docs_url is None and app.redoc_url is None, "FastAPI's CDN-backed pages would shadow these"
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} - API reference"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger_ui_page(openapi_url, title))

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return HTMLResponse(OAUTH2_REDIRECT_PAGE)

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return HTMLResponse(redoc_page(openapi_url, title))

    # /ui itself is redirected to /ui/ by the router (redirect_slashes), without a route of its own.
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
