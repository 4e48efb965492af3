"""The browser side: the dashboard at /ui/ and the API reference at /docs and /redoc, all served offline.

Everything here is public, like the reference always was: a page holds no data, and every data call the
dashboard makes sends the API key the person typed. The static files are a Starlette mount, not API
routes, so they stay out of the OpenAPI document and out of the route walks of the tests. Swagger UI and
ReDoc come from the vendored copies under api/ui/vendor/ instead of a CDN, so the reference works on a
machine with no internet access (FastAPI's documented recipe for self-hosted docs assets).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent / "ui"
VENDOR = "/ui/vendor"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def install_ui(app: FastAPI) -> None:
    """Mount the dashboard and serve /docs and /redoc from vendored files; needs docs_url=None, redoc_url=None."""
    assert app.docs_url is None and app.redoc_url is None, "FastAPI's CDN-backed pages would shadow these"
    openapi_url = app.openapi_url or "/openapi.json"
    favicon = f"{VENDOR}/swagger-ui/favicon-32x32.png"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API reference",
            swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=favicon,
            oauth2_redirect_url=OAUTH2_REDIRECT,
            # No online validator badge: it would send the document to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API reference",
            redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
        # ReDoc's side menu always shows a logo from cdn.redoc.ly: images from here only, so the page asks no
        # other host for anything (ReDoc hides the image when it does not load).
        page.headers["Content-Security-Policy"] = "img-src 'self' data: blob:"
        return page

    # /ui itself is redirected to /ui/ by the router (redirect_slashes), without a route of its own.
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
