"""Integer fields with both bounds: the one way every integer a client sends is declared.

A bare `int` takes any Python integer, and one past what its column holds (10**30 for train_size) reached the
database and raised there, a 500. `Between(low, high)` in a field's `Annotated` puts `minimum` and `maximum`
in the JSON schema (so the OpenAPI document and generated clients know them) and refuses a value outside them
with one message naming both bounds, which the API answers as a 422 naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

INT32_MAX = 2**31 - 1  # the widest integer column here: INTEGER is 32-bit on PostgreSQL (SQLite's are 64-bit)
INT64_MAX = 2**63 - 1  # what SQL's LIMIT and OFFSET take on every supported database


@dataclass(frozen=True)
class Between:
    """Field metadata: an integer from `low` to `high`, both included (`Annotated[int, Between(1, 1000)]`)."""

    low: int
    high: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(minimum=self.low, maximum=self.high)
        return json_schema

    def _check(self, value: int) -> int:
        if not self.low <= value <= self.high:
            # Both bounds, in pydantic's own words (clients and the dashboard match on them); not the value itself:
            # it may be 30 digits long, and the 422's `detail` echoes it already.
            raise ValueError(
                f"Input should be greater than or equal to {self.low} and less than or equal to {self.high}"
            )
        return value
