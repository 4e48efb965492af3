"""Server-Sent Events as the API sends them: parsing the text/event-stream format into events."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One event: its name (`status`, `epoch`, `progress`), its id (a stream entry id, for resuming), its data."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the stream's lines (without their line ends), per the SSE format: fields, a blank line ends one.

    Comments (keep-alives) and `retry:` are skipped; data that is not a JSON object is kept under "text".
    """
    name, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = {"text": text}
                yield Event(name, parsed if isinstance(parsed, dict) else {"value": parsed}, event_id)
            name, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
        elif key == "id":
            event_id = value
