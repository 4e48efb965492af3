"""The ids and pages clients name resources by, with their ranges, as request parameters.

Who may see which row is `domain/access.py`; a path id outside 1..MAX_ID is found there to be a row that cannot
exist (a 404, not a 422).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from domain.access import MAX_ID
from training.bounds import INT64_MAX, Between
from training.spec import DATASET_NAME

MAX_OFFSET = INT64_MAX  # OFFSET is a 64-bit integer on every supported database


def id_path(description: str, example: int = 1) -> Any:
    """A path id: its range is in the document, but an id outside it is a 404, not a 422.

    Such an id is a resource that does not exist, checked by `domain.access.in_id_range` in the lookup; it must
    never reach the database, which overflows on it.
    """
    return Path(
        description=f"{description} From 1 to {MAX_ID}: any other number is a 404, as for an id not in use.",
        examples=[example],
        json_schema_extra={"minimum": 1, "maximum": MAX_ID},
    )


ExperimentId = Annotated[int, id_path("An experiment id (yours, unless you are an admin).")]
SweepId = Annotated[int, id_path("A sweep id (yours, unless you are an admin).")]
UserId = Annotated[int, id_path("A user id, as GET /users lists them.")]
KeyId = Annotated[int, id_path("A key id, as GET /users lists them.")]
DatasetName = Annotated[
    str, Path(description="A dataset's name (GET /datasets lists them).", max_length=100, examples=["mnist"])
]
DatasetVersionNumber = Annotated[int, id_path("The version number (GET /datasets/{name} lists them).")]
# Lists are read a page at a time, newest first. Past 64 bits an OFFSET is a database error, not an empty page.
MAX_PAGE = 500
PageLimit = Annotated[int, Between(1, MAX_PAGE), Query(description="How many to answer at most.")]
PageOffset = Annotated[int, Between(0, MAX_OFFSET), Query(description="How many of the newest to skip.")]
QuerySweepId = Annotated[Annotated[int, Between(1, MAX_ID)] | None, Query(description="Only this sweep's.")]
DatasetFilter = Annotated[
    str | None,
    Query(
        pattern=DATASET_NAME,
        description="Only those on this dataset (a built-in's or an uploaded one's name).",
    ),
]
