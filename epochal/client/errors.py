"""Exceptions for what the API answers: one class per status a program handles differently."""

from __future__ import annotations

from typing import Any

import httpx

from epochal.client.retry import retry_after_s


class EpochalError(Exception):
    """Anything that went wrong talking to an Epochal service."""


class ConnectionFailed(EpochalError):
    """The service could not be reached (nothing listening, DNS, a timeout): no status to report."""


class WaitTimedOut(EpochalError, TimeoutError):
    """`wait` gave up before the experiment finished; the job itself goes on."""


class ApiError(EpochalError):
    """The API answered with an error status. `message` is its own words: `message` for a 422, else `detail`."""

    def __init__(self, status: int, message: str, body: Any = None, response: httpx.Response | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        self.response = response
        # The client's own words, after the API's: which service answered and what to do (a 401), or how long
        # it kept retrying (a 429 or 503). Empty when there is nothing to add.
        self.hint = ""
        self.attempts = 1  # how many times the request was sent

    def __str__(self) -> str:
        return f"{self.status}: {self.message}" + (f" ({self.hint})" if self.hint else "")


class Unauthorized(ApiError):
    """401: no key, or a malformed, unknown or revoked one."""


class Forbidden(ApiError):
    """403: the key is valid, but the route needs an admin."""


class NotFound(ApiError):
    """404: no such resource, or one that belongs to another user (the API does not tell them apart)."""


class Conflict(ApiError):
    """409: the resource is in a state that does not allow this (cancel a finished job, evaluate a running one)."""


class InvalidRequest(ApiError):
    """422: the spec or parameters are invalid; `message` names each bad field."""


class RateLimited(ApiError):
    """429: a quota or rate limit was reached; `retry_after` is the seconds the API asked to wait, if it said."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class Unavailable(ApiError):
    """503: the database or the broker is down right now; `retry_after` as for 429."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
}


def _message(status: int, body: Any, text: str) -> str:
    if isinstance(body, dict):
        # A 422 carries FastAPI's list of bad fields in `detail` and one sentence for people in `message`.
        if isinstance(body.get("message"), str) and body["message"]:
            return str(body["message"])
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
        # GET /health answers 503 with the state of each dependency rather than a `detail`.
        broken = [
            f"{name}: {state.get('detail')}"
            for name, state in body.items()
            if isinstance(state, dict) and state.get("ok") is False
        ]
        if broken:
            return "; ".join(broken)
    return text.strip() or httpx.codes.get_reason_phrase(status)


def error_for(response: httpx.Response) -> ApiError:
    """The exception that stands for this error response."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    status = response.status_code
    message = _message(status, body, response.text)
    if status == 429:
        return RateLimited(status, message, body, response, retry_after=retry_after_s(response))
    if status == 503:
        return Unavailable(status, message, body, response, retry_after=retry_after_s(response))
    return _BY_STATUS.get(status, ApiError)(status, message, body, response)
