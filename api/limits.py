"""A cap on request bodies, enforced while they stream, before anything is parsed or spooled.

Starlette spools multipart file parts to disk with no size limit, and a handler only sees the body
once it has all arrived; so the cap has to sit in front of the app, at the ASGI layer. A body over
the cap is answered 413 as soon as its declared length (Content-Length) or the bytes counted so far
go over it; the rest is never read.
"""

from __future__ import annotations

import json

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


class BodySizeLimit:
    """ASGI middleware: 413 for any body over `max_bytes`, or over `max_json_bytes` when it is JSON."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes

    def _cap_for(self, scope: Scope) -> tuple[int, str]:
        headers = dict(scope.get("headers") or [])
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        # FastAPI parses a body that has no content type as JSON too.
        if not media_type or media_type == b"application/json" or media_type.endswith(b"+json"):
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
            # Refused on the header alone: not one byte of the body is read.
            await _send_413(send, message)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            incoming = await receive()
            if incoming["type"] == "http.request":
                received += len(incoming.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(message)
            return incoming

        async def tracking_send(outgoing: Message) -> None:
            nonlocal response_started
            if outgoing["type"] == "http.response.start":
                response_started = True
            await send(outgoing)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # A chunked body (no Content-Length, or one that lied) went over the cap mid-stream.
            if not response_started:
                await _send_413(send, message)


async def _send_413(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The unread rest of the body makes the connection unusable for another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
