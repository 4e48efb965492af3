"""A spec checked against the uploaded dataset it names, for every route that takes one.

Reading a body checks a spec against a built-in dataset at once; one that names an uploaded dataset is checked here,
where the caller and the database are known: the dataset must be one the caller may see (else a 404, in the words
of a missing one, also as the dataset of a spec) and ready, and the rest of the spec must fit it (its classes, its
input shape), answered as the body's own 422s are.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from domain.datasets import lookup_for
from models.users import User
from training.spec import ExperimentSpec

SpecT = TypeVar("SpecT", bound=ExperimentSpec)


def against_datasets(session: Session, user: User, spec: SpecT) -> SpecT:
    """`spec`, checked against its dataset (a built-in's is already); 404 or 422 when it cannot train on it."""
    if spec.resolved:
        return spec
    try:
        checked: SpecT = type(spec).with_datasets(spec, lookup_for(session, user))
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    return checked
