"""Where the client finds the service and its key when the caller does not say."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"
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
