"""Flower's configuration file (`flower --conf=epochal/flowerconfig.py`): a login, always.

Flower shows every job's arguments and can revoke jobs and shut workers down, so it never starts
without HTTP basic auth. Flower executes this file at start-up and takes the names it defines as
its options; the credentials come from EPOCHAL_FLOWER_BASIC_AUTH, never from a default.
"""

from __future__ import annotations

import sys

from config import get_settings
from infra.redaction import install_log_redaction

install_log_redaction()  # Flower logs the broker URL at start; its password never reaches the log
_credentials = get_settings().flower_basic_auth.get_secret_value()
if not _credentials:
    sys.exit(
        "epochal flower: EPOCHAL_FLOWER_BASIC_AUTH is not set. Flower shows every job and can revoke it, so it "
        "does not start without a login: set EPOCHAL_FLOWER_BASIC_AUTH=user:password"
    )
basic_auth = [_credentials]
