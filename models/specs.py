"""Conversions between the experiment spec and its row, derived from the spec's fields so both stay in one vocabulary.

Every field of `ExperimentSpec` is the column of the same name, but a field holding a model (the head), which is
one column per field of that model, `<field>_<its field>` (head_units, head_activation). The row keeps what the
spec resolved: its `resolved_<field>` property where it has one (the learning rate's Keras default), else the
field. Nothing here names a field of the spec but to read rows written before a rule existed, so a new field of
the spec needs a column (and its migration) and nothing else.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Field, TypeAdapter
from pydantic.fields import FieldInfo
from sqlalchemy.orm import Session, object_session

from models.datasets import recorded_info
from models.db import session_scope
from models.tables import Experiment
from training.spec import DATASET_CONTEXT, DatasetInfo, ExperimentSpec, Head, Validation, builtin_info, repeat_seed


def value_types(field: FieldInfo) -> tuple[Any, ...]:
    """The types a spec field's value may have, without None and without bounds (`Annotated[int, Between]` is int)."""
    annotation = field.annotation
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    return tuple(get_args(m)[0] if get_origin(m) is Annotated else m for m in members if m is not type(None))


def nested_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model a spec field holds (Head for `head`), stored as one column per its fields; None for a plain value."""
    models = [t for t in value_types(field) if isinstance(t, type) and issubclass(t, BaseModel)]
    return models[0] if len(models) == 1 and len(value_types(field)) == 1 else None


def _columns_of(name: str, field: FieldInfo) -> tuple[str, ...]:
    nested = nested_model(field)
    return tuple(f"{name}_{part}" for part in nested.model_fields) if nested else (name,)


# spec field -> the columns that store it, in the spec's order.
SPEC_COLUMNS: dict[str, tuple[str, ...]] = {
    name: _columns_of(name, field) for name, field in ExperimentSpec.model_fields.items()
}


_missing = [c for columns in SPEC_COLUMNS.values() for c in columns if c not in Experiment.__table__.c]
if _missing:  # a field of the spec that no column stores: say so here, not as a KeyError in some request
    raise RuntimeError(
        f"ExperimentSpec has fields with no column in experiment: {', '.join(_missing)}; add them to "
        "models/tables.py (a nested model's fields as <field>_<its field>) with a migration"
    )


def stored_nullable(name: str) -> bool:
    """Whether a stored experiment may lack the spec field `name` (a row from before its column was required)."""
    return any(Experiment.__table__.c[column].nullable for column in SPEC_COLUMNS[name])


def resolved_value(spec: ExperimentSpec, name: str) -> Any:
    """What a validated spec's field `name` came to: its `resolved_<name>` where it has one (a default that depends
    on other fields), else the field itself."""
    return getattr(spec, f"resolved_{name}", getattr(spec, name))


def spec_row_values(spec: ExperimentSpec) -> dict[str, Any]:
    """The columns of a validated spec: what it resolved, one column per field (per part of a nested one)."""
    values: dict[str, Any] = {}
    for name, columns in SPEC_COLUMNS.items():
        value = resolved_value(spec, name)
        if nested_model(ExperimentSpec.model_fields[name]) is None:
            # A model in a field that may also hold a plain value (a network graph) is stored as its JSON.
            values[name] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        else:
            for part, column in zip(columns_of_parts(name), columns, strict=True):
                values[column] = getattr(value, part) if value is not None else None
    return values


def columns_of_parts(name: str) -> tuple[str, ...]:
    """The field names of the model that spec field `name` holds, in the order of its columns."""
    return tuple(column.removeprefix(f"{name}_") for column in SPEC_COLUMNS[name])


def experiment_from_spec(spec: ExperimentSpec) -> Experiment:
    """A new queued experiment row holding every field of a validated spec."""
    return Experiment(**spec_row_values(spec), base_seed=spec.seed, repeat=0)


def repeated_experiments(spec: ExperimentSpec, repeats: int) -> list[Experiment]:
    """`repeats` new rows of one configuration: repeat i trains with repeat_seed(spec.seed, i), recorded on the row."""
    rows = []
    for index in range(repeats):
        row = experiment_from_spec(spec)
        row.seed, row.base_seed, row.repeat = repeat_seed(spec.seed, index), spec.seed, index
        rows.append(row)
    return rows


def validation_of(experiment: Experiment) -> Validation:
    """How `experiment` validated; a row not yet flushed may lack it, and then the pre-0005 rule decides."""
    if experiment.validation is not None:
        return experiment.validation
    return Validation.TEST if experiment.validation_split is None else Validation.HELD_OUT


def head_of(experiment: Experiment) -> Head:
    """The output head stored in `experiment`'s two head columns."""
    head = stored_value(experiment, "head")
    assert isinstance(head, Head)
    return head


def _train_size_of(experiment: Experiment) -> int | None:
    # A row from before train_size was bounded by the training split may ask for more than there is; training
    # took the whole split then (it slices the shuffled split), so the split's size reads it the same way.
    builtin = builtin_info(experiment.dataset)
    if experiment.train_size is None or builtin is None:
        return experiment.train_size
    return min(experiment.train_size, builtin.train_examples)


# How a field is read back where its column alone does not say it, every read (the answer, the sweep table,
# the spec the worker trains) ...
_STORED_READERS = {"validation": validation_of}
# ... and only where the spec is validated again, for training.
_SPEC_READERS = {"train_size": _train_size_of}


def stored_value(experiment: Experiment, name: str) -> Any:
    """The spec field `name` as `experiment` stores it (a nested model put back together from its columns)."""
    if name in _STORED_READERS:
        return _STORED_READERS[name](experiment)
    field = ExperimentSpec.model_fields[name]
    nested = nested_model(field)
    if nested is None:
        value = getattr(experiment, name)
        # A model stored as its JSON (a network graph, where the field may also hold a name; one of several, such
        # as a learning-rate schedule, told apart as the spec tells them) is read back as one.
        models = [t for t in value_types(field) if isinstance(t, type) and issubclass(t, BaseModel)]
        if not isinstance(value, dict) or not models:
            return value
        return _model_reader(name).validate_python(value)
    columns = zip(columns_of_parts(name), SPEC_COLUMNS[name], strict=True)
    parts = {part: getattr(experiment, column) for part, column in columns}
    return None if all(v is None for v in parts.values()) else nested(**parts)


@cache
def _model_reader(name: str) -> TypeAdapter[Any]:
    """Reads spec field `name`'s stored JSON object into its model, with the field's own discriminator."""
    field = ExperimentSpec.model_fields[name]
    models = tuple(t for t in value_types(field) if isinstance(t, type) and issubclass(t, BaseModel))
    union: Any = models[0] if len(models) == 1 else Annotated[Union[models], Field(discriminator=field.discriminator)]  # noqa: UP007
    return TypeAdapter(union)


def stored_spec(experiment: Experiment) -> dict[str, Any]:
    """Every field of the spec as `experiment` stores it, in the spec's order, not validated again."""
    return {name: stored_value(experiment, name) for name in SPEC_COLUMNS}


def spec_of(experiment: Experiment, session: Session | None = None) -> ExperimentSpec:
    """The spec stored in `experiment`, validated again (a row may predate a rule), against the dataset version it
    records (read in `session`, by default the row's own). LookupError when that version is gone."""
    stored = stored_spec(experiment)
    stored.update({name: read(experiment) for name, read in _SPEC_READERS.items()})
    return ExperimentSpec.model_validate(
        stored, context={DATASET_CONTEXT: _recorded(session or object_session(experiment))}
    )


def _recorded(session: Session | None, *, to_train: bool = True) -> Callable[[str, int | None], DatasetInfo]:
    def lookup(name: str, version: int | None) -> DatasetInfo:
        if session is not None:
            return recorded_info(session, name, version, to_train=to_train)
        with session_scope() as own:  # a row read apart from its session (a cache's, an answer's)
            return recorded_info(own, name, version, to_train=to_train)

    return lookup


def dataset_info_of(experiment: Experiment, session: Session | None = None) -> DatasetInfo:
    """The dataset version `experiment` trained on (or will), as serving and the reports read it: also once that
    version is deleted (its network still serves, its results still read)."""
    builtin = builtin_info(experiment.dataset)
    if builtin is not None:
        return builtin
    lookup = _recorded(session or object_session(experiment), to_train=False)
    return lookup(experiment.dataset, experiment.dataset_version)


def described_dataset_of(experiment: Experiment, session: Session | None = None) -> DatasetInfo:
    """`dataset_info_of`, with a built-in's content hash as its row records it (the model card's): one more read,
    which the other callers (serving, the reports) have no use for."""
    info = dataset_info_of(experiment, session)
    if not info.builtin:
        return info
    return _recorded(session or object_session(experiment), to_train=False)(info.name, info.version)
