"""Keeping secrets out of output: error texts, log records and tracebacks never show a configured password."""

from __future__ import annotations

import logging
from typing import Any

from config import SettingsError, get_settings
from infra.url_passwords import REDACTED, redact_url

__all__ = ["REDACTED", "RedactSecrets", "install_log_redaction", "redact_secrets", "redact_url"]


def redact_secrets(text: str) -> str:
    """`text` (an exception message, a log line) with every configured password and URL password replaced by ***."""
    try:
        secrets = get_settings().secrets
    except SettingsError:
        secrets = []  # no usable settings: no configured password to look for, only the URL pattern below
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return redact_url(text)


class RedactSecrets(logging.Filter):
    """Rewrites a log record's message and traceback with `redact_secrets`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a malformed record is the logging module's to report, not ours
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the traceback they print is the redacted one.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


def install_log_redaction() -> None:
    """Redact every log record this process creates, whichever handler (uvicorn's, Celery's) later prints it.

    A filter on a logger misses records propagated from child loggers, and a filter on a handler misses
    handlers configured afterwards; the record factory sees every record, so the filter runs there.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_secrets", False):
        return
    redactor = RedactSecrets()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redactor.filter(record)
        return record

    factory.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
