"""The spec's fields in a read schema, derived from `ExperimentSpec`, so a new field of the spec is answered unasked.

A read model declares its own fields (the job's: status, attempts, ...) and `with_stored_spec` adds every field of
the spec as it is stored: the spec's type without its bounds or default (an answer has every field), nullable
where its column is (rows from before a rule). A field declared on the model itself wins, to describe it for the
reader. The order of the fields is the schema's (its `required` list): the spec's, with the model's own fields
around them, each where `Follows` puts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import or_
from types import FunctionType
from typing import Any, TypeVar

from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo

from models.specs import SPEC_COLUMNS, stored_nullable, value_types
from training.spec import ExperimentSpec

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Follows:
    """Annotation metadata: this field of a read model comes right after the spec's field `spec_field`, and the
    model's fields declared after it follow it; `None`: after the spec's last field."""

    spec_field: str | None


def stored_annotation(name: str) -> Any:
    """The type under which the spec field `name` is read back."""
    annotation = reduce(or_, value_types(ExperimentSpec.model_fields[name]))
    return annotation | None if stored_nullable(name) else annotation


def _follows(field: FieldInfo) -> Follows | None:
    return next((m for m in field.metadata if isinstance(m, Follows)), None)


def _ordered_fields(model: type[BaseModel]) -> dict[str, tuple[Any, FieldInfo]]:
    own = model.model_fields
    spec_fields = list(SPEC_COLUMNS)
    fields: dict[str, tuple[Any, FieldInfo]] = {}

    def spec_up_to(last: str | None) -> None:
        while spec_fields:
            name = spec_fields.pop(0)
            declared = own.get(name)
            fields[name] = (
                (declared.annotation, declared) if declared is not None else (stored_annotation(name), FieldInfo())
            )
            if name == last:
                return
        if last is not None:
            raise ValueError(f"{model.__name__}: Follows({last!r}) names no field of the spec after the ones before")

    for name, field in own.items():
        if name in SPEC_COLUMNS:
            continue
        follows = _follows(field)
        if follows is not None:
            spec_up_to(follows.spec_field)
        fields[name] = (field.annotation, field)
    spec_up_to(None)
    return fields


def with_stored_spec(model: type[M]) -> type[M]:
    """`model` with every field of the spec added as it is stored (see the module), its methods kept."""
    if model.__bases__ != (BaseModel,):
        raise TypeError(f"{model.__name__}: with_stored_spec rebuilds a model made directly from BaseModel")
    rebuilt: type[M] = create_model(  # type: ignore[call-overload]
        model.__name__,
        __config__=model.model_config,
        __doc__=model.__doc__,
        __module__=model.__module__,
        **_ordered_fields(model),
    )
    for name, value in vars(model).items():
        if isinstance(value, classmethod | staticmethod | property | FunctionType) and not name.startswith("__"):
            setattr(rebuilt, name, value)
    rebuilt.__qualname__ = model.__qualname__
    return rebuilt
