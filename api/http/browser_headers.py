"""The headers that tell a browser what it may do with any answer of this API, set in one place for all of them.

The dashboard holds buttons that spend a user's quota (Train, Cancel, Retry), so no other site may frame it
(clickjacking): `frame-ancestors 'none'` for browsers that read CSP, `X-Frame-Options: DENY` for those that do
not. The pages run only scripts served by the API itself: no inline script, no eval, no other host, so a name
or a label that some day escapes into markup cannot run. JSON answers get the same headers: `nosniff` stops a
browser from reading an answer as HTML or script, and `default-src 'none'` makes one opened as a page inert.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Each directive names the least the pages need: the dashboard (api/ui/), Swagger UI at /docs, ReDoc at /redoc.
POLICY: dict[str, str] = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    # data: for the icons the libraries' stylesheets carry inline; blob: for the dashboard's preview of a
    # dropped image, and a dataset's sample grid (fetched with the key, which an <img src> could not send).
    "img-src": "'self' data: blob:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "manifest-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}

# What one page needs beyond POLICY, added to that page's policy only. ReDoc (styled-components) writes its
# styles into <style> elements it creates empty and fills through the CSSOM, which CSP does not police: the
# hashes allow an empty element and the one stylesheet the bundle inserts with text (redoc.standalone.js 2.5.2;
# tests/test_browser.py fails on any violation if an update changes it), and nothing else. Its search index
# runs in a worker it starts from a blob: URL, which only a script already allowed can create.
PAGE_ALLOWANCES: dict[str, dict[str, tuple[str, ...]]] = {
    "/redoc": {
        "style-src": (
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",  # the empty string
            "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
        ),
        "worker-src": ("'self'", "blob:"),
    },
}

HEADERS: dict[str, str] = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def content_security_policy(path: str) -> str:
    """The policy for the answer at `path`, as a header value."""
    directives = dict(POLICY)
    for name, sources in PAGE_ALLOWANCES.get(path, {}).items():
        directives[name] = " ".join(dict.fromkeys([*directives.get(name, "").split(), *sources]))
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class BrowserHeaders:
    """ASGI middleware: the policy and the headers above on every HTTP answer, errors and event streams included.

    It adds headers as the answer starts and never buffers a body, so streams pass through as they are.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = [
            (b"content-security-policy", content_security_policy(scope["path"]).encode()),
            *((name.lower().encode(), value.encode()) for name, value in HEADERS.items()),
        ]
        names = {name for name, _ in added}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Ours replace any a handler set: the policy is this module's alone.
                kept = [(n, v) for n, v in message.get("headers") or [] if n.lower() not in names]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
