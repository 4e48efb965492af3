"""Where the client finds the service and its key when the caller does not say."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PORT = 8000  # what `python -m epochal serve` and `python -m epochal.api_server` listen on unless told
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
# Retries on a 429 or 503 with Retry-After (epochal/client/retry.py): sends in all, and seconds of waiting in all.
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_MAX_RETRY_WAIT_S = 30.0
KEY_FILE = "api-key"  # what `python -m epochal serve` writes the first admin's key to, in the state folder


def default_url() -> str:
    return os.environ.get("EPOCHAL_URL") or DEFAULT_URL


def key_file() -> Path:
    # The same default as the service's EPOCHAL_STATE_DIR, so a client on the server machine finds the key.
    return Path(os.environ.get("EPOCHAL_STATE_DIR") or "var") / KEY_FILE


def default_key() -> str | None:
    """EPOCHAL_API_KEY, else the key file the service's first start wrote, else none."""
    if os.environ.get("EPOCHAL_API_KEY"):
        return os.environ["EPOCHAL_API_KEY"]
    path = key_file()
    try:
        return path.read_text().strip() or None
    except OSError:  # absent, or not readable by this account (it is 0600): the API's 401 will say what to do
        return None


def default_max_attempts() -> int:
    """EPOCHAL_CLIENT_MAX_ATTEMPTS (1: never retry), else DEFAULT_MAX_ATTEMPTS."""
    return max(1, int(os.environ.get("EPOCHAL_CLIENT_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS))


def default_max_retry_wait_s() -> float:
    """EPOCHAL_CLIENT_MAX_RETRY_WAIT_S, else DEFAULT_MAX_RETRY_WAIT_S."""
    return max(0.0, float(os.environ.get("EPOCHAL_CLIENT_MAX_RETRY_WAIT_S") or DEFAULT_MAX_RETRY_WAIT_S))
