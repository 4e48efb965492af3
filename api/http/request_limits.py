"""Limits on what a request may carry, enforced in front of the app, before anything is parsed or spooled.

`BodySizeLimit`: Starlette spools multipart file parts to disk with no size limit, and a handler only
sees the body once it has all arrived; so the cap has to sit at the ASGI layer. A body over the cap is
answered 413 as soon as its declared length (Content-Length) or the bytes counted so far go over it;
the rest is never kept. It is read and dropped, though, up to a bound (a lingering close, as nginx does):
a client that sends its whole body before it reads (`requests`, `urllib`) would otherwise have the
connection reset under it, since closing a socket with unread bytes sends a TCP reset, and never see its 413.

`StorableText`: JSON may carry text no response can encode (an unpaired surrogate, "\\ud800") or
PostgreSQL cannot store (NUL, "\\u0000"); either would otherwise end as a 500 deep in a handler. Such
a body is a 422 naming the field, and a NUL in the path a 404.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from `receive` inside the app when the streamed body goes over the cap.

    An HTTPException, because FastAPI turns any other error raised while it reads a body into a 400.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail, headers={"connection": "close"})


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size} bytes"


# A refused body is drained until it ends, `max_drain_bytes` have been dropped, the client pauses this long, or
# this much time has passed in all: a client that stopped sending, or trickles, must not hold the connection.
DRAIN_IDLE_S = 2.0
DRAIN_MAX_S = 30.0


class BodySizeLimit:
    """ASGI middleware: 413 for any body over `max_bytes`, or over `max_json_bytes` when it is JSON.

    The 413 is sent at once; then up to `max_drain_bytes` more of the body are read and dropped before the
    connection closes, so that a client still sending can read its answer (0: close at once).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        max_json_bytes: int,
        max_drain_bytes: int = 0,
        max_upload_bytes: int | None = None,
        upload_routes: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes
        self.max_drain_bytes = max_drain_bytes
        # Routes that stream their body into storage as it arrives (a dataset upload): their cap is this one.
        self.max_upload_bytes = max_upload_bytes
        self.upload_routes = upload_routes

    def _cap_for(self, scope: Scope) -> tuple[int, str]:
        if self.max_upload_bytes is not None and (scope.get("method"), scope.get("path")) in self.upload_routes:
            return self.max_upload_bytes, "uploads (EPOCHAL_MAX_UPLOAD_BYTES)"
        if _is_json(scope):
            return min(self.max_json_bytes, self.max_bytes), "JSON request bodies"
        return self.max_bytes, "request bodies"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap, what = self._cap_for(scope)
        message = f"{what} must be at most {_mib(cap)}; send a smaller one"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            # Refused on the header alone: not one byte of the body is kept.
            await self._refuse(scope, receive, send, message, int(declared))
            return

        received = 0
        response_started = False
        over_cap = False

        async def counting_receive() -> Message:
            nonlocal received, over_cap
            incoming = await receive()
            if incoming["type"] == "http.request":
                received += len(incoming.get("body", b""))
                if received > cap:
                    over_cap = True
                    raise BodyTooLarge(message)
            return incoming

        async def tracking_send(outgoing: Message) -> None:
            nonlocal response_started
            if outgoing["type"] == "http.response.start":
                response_started = True
            elif over_cap and not outgoing.get("more_body", False) and self._drains(scope, None):
                # The app answered the BodyTooLarge it saw (Starlette turns an HTTPException into its response):
                # the end of that answer, which closes the connection, waits until the rest has been read.
                await send({**outgoing, "more_body": True})
                await _drain(receive, self.max_drain_bytes)
                outgoing = {"type": "http.response.body", "body": b""}
            await send(outgoing)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # A chunked body (no Content-Length, or one that lied) went over the cap mid-stream.
            if not response_started:
                await self._refuse(scope, receive, send, message, None)

    def _drains(self, scope: Scope, declared: int | None) -> bool:
        """Whether the rest of a refused body is read before the connection closes."""
        headers = dict(scope.get("headers") or [])
        # A client that waits for "100 Continue" sends no body once it has its answer; one whose declared body is
        # past the bound would be cut off anyway.
        return (
            self.max_drain_bytes > 0
            and b"100-continue" not in headers.get(b"expect", b"").lower()
            and (declared is None or declared <= self.max_drain_bytes)
        )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, message: str, declared: int | None) -> None:
        """The 413, then the rest of the body read and dropped (within bounds), so the close is not a reset."""
        if not self._drains(scope, declared):
            await _send_413(send, message)
            return
        # The answer goes out whole (its Content-Length says where it ends); its ending, which closes the
        # connection, waits until the rest of the request has been read.
        await _send_json(send, 413, {"detail": message}, close=True, more_body=True)
        await _drain(receive, self.max_drain_bytes)
        await send({"type": "http.response.body", "body": b""})


async def _drain(receive: Receive, max_bytes: int) -> None:
    """Read and drop the request body until it ends, `max_bytes` were dropped, or the client stalls."""
    dropped, deadline = 0, time.monotonic() + DRAIN_MAX_S
    while dropped <= max_bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            incoming = await asyncio.wait_for(receive(), timeout=min(DRAIN_IDLE_S, remaining))
        except TimeoutError:
            return
        if incoming["type"] != "http.request":
            return  # the client went away
        dropped += len(incoming.get("body", b""))
        if not incoming.get("more_body", False):
            return


def _is_json(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    # A body that names no content type is no file upload: it gets the small cap too.
    return not media_type or media_type == b"application/json" or media_type.endswith(b"+json")


async def _send_json(
    send: Send, status: int, content: dict[str, Any], close: bool = False, more_body: bool = False
) -> None:
    """A JSON response; with `more_body` the caller ends it later (with an empty body message)."""
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": more_body})


async def _send_413(send: Send, detail: str) -> None:
    # The unread rest of the body makes the connection unusable for another request.
    await _send_json(send, 413, {"detail": detail}, close=True)


UNSTORABLE = "text may not contain NUL characters (\\u0000) or unpaired surrogates (\\ud800-\\udfff)"


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")  # fails on an unpaired surrogate, as encoding the response would
    except UnicodeEncodeError:
        return False
    return True


def _unstorable_text_at(document: Any) -> list[str | int] | None:
    """The location of the first string (value or key) that cannot be stored or sent back, or None."""
    stack: list[tuple[list[str | int], Any]] = [([], document)]
    while stack:  # iterative: a deeply nested document must not exhaust the interpreter's stack
        where, node = stack.pop()
        if isinstance(node, str):
            if not _storable(node):
                return where
        elif isinstance(node, dict):
            for key, value in node.items():
                if not _storable(key):
                    return [*where, repr(key)]
                stack.append(([*where, key], value))
        elif isinstance(node, list):
            stack.extend(([*where, index], value) for index, value in enumerate(node))
    return None


class StorableText:
    """ASGI middleware: 422 for a JSON body holding unstorable text, 404 for a NUL in the path.

    Install it inside `BodySizeLimit`, so the body it buffers to inspect is already capped.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", ""):
            await _send_json(send, 404, {"detail": "no resource has a NUL character in its path"})
            return
        if not _is_json(scope) or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return

        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            where = _unstorable_text_at(json.loads(body)) if body else None
        except (ValueError, RecursionError):
            where = None  # not JSON: the app answers that with its own 400 or 422
        if where is not None:
            loc = ["body", *where]
            field = ".".join(str(part) for part in where) or "body"
            error = {"type": "string_unstorable", "loc": loc, "msg": UNSTORABLE, "input": None}
            await _send_json(send, 422, {"message": f"{field}: {UNSTORABLE}", "detail": [error]})
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
