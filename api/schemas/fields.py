"""Field types that several bodies share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator

from models.base import as_utc

# Datetimes leave the API in UTC with their offset, whatever the database handed back (SQLite drops it).
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
