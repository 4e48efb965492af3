"""When the client sends a request again by itself: on a 429 or a 503 that carries Retry-After, within bounds.

The rule, so that a retry never does a thing twice:

- Only 429 and 503, and only when the API said when to come back (Retry-After, in seconds). Without it (a
  `/health` 503, a quota the user must act on) the error is raised at once.
- A 429 is always retried: every 429 of this API is a refusal made before anything was done (the rate limit, the
  quotas: a refused submission stores nothing), so sending it again is safe, a POST included.
- A 503 is retried for idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE). A POST (or PATCH) only when the API
  said it did nothing, with the header `Epochal-Nothing-Done: true` (a row busy behind another transaction: rolled
  back). A POST /experiments whose jobs could not be queued answers 503 without it: they were stored as failed,
  and submitting again would make more.
- At most `max_attempts` sends in all and `max_retry_wait_s` seconds of waiting; a Retry-After that would go past
  the wait left ends the retries at once. The error raised then is the last answer's, saying how long it tried.
"""

from __future__ import annotations

import httpx

RETRIED_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
NOTHING_DONE_HEADER = "Epochal-Nothing-Done"  # set by the API on a 503 whose request changed nothing


def retry_after_s(response: httpx.Response) -> float | None:
    """The seconds of the response's Retry-After, or None (absent, or an HTTP date: the API never sends one)."""
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def retry_delay(method: str, response: httpx.Response) -> float | None:
    """Seconds to wait before sending `method` again after `response`; None when it must not be sent again."""
    if response.status_code not in RETRIED_STATUSES:
        return None
    delay = retry_after_s(response)
    if delay is None:
        return None
    nothing_done = response.headers.get(NOTHING_DONE_HEADER, "").lower() == "true"
    if response.status_code == 503 and method.upper() not in IDEMPOTENT_METHODS and not nothing_done:
        return None
    return delay
