"""Finding and hiding the password inside a URL: the one part of redaction that the settings need themselves.

A leaf module (it imports nothing of the service), so `config` can name a bad URL without showing its password.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

REDACTED = "***"
# scheme://user:password@host: any URL with a password, configured or not (e.g. inside a driver's error text).
_URL_WITH_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<password>[^\s/]+)(?P<at>@)")


def url_password(url: str) -> str:
    """The password in `url`, or '' when it has none."""
    userinfo, at, _host = urlparse(url).netloc.rpartition("@")
    return userinfo.partition(":")[2] if at else ""


def redact_url(url: str) -> str:
    """`url` with its password, if any, replaced by ***: redis://:***@host:6379/0, postgresql+psycopg://u:***@h/db."""
    return _URL_WITH_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}{m['at']}", url)
