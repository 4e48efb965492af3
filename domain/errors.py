"""What a service refuses, and why: each error's text says what is wrong and how to fix it.

The API answers each with one status (`api/http/errors.py`: NotFound 404, Conflict 409, Invalid 422,
QuotaExceeded 429 with Retry-After, Unavailable 503); the worker and the reaper never meet them.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the service refuses; `detail` is the sentence a person reads."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """No such row, or one the caller may not see (the two are never told apart)."""


class Conflict(DomainError):
    """The row is in a state that does not allow this."""


class Invalid(DomainError):
    """The request names something this deployment does not have (a queue no worker serves)."""


class QuotaExceeded(DomainError):
    """Over a quota or rate limit: nothing was done, and `retry_after_s` says when asking again makes sense."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = max(1, retry_after_s)


class Unavailable(DomainError):
    """A dependency (the broker) did not take what the service had to hand it."""
