"""Every field of the spec reaches everything built on it, with no list of the fields in between.

The test walks `ExperimentSpec.model_fields`. For each field it makes a spec that differs from a dataset's
default spec in that field (and in the defaults it decides, such as the dataset's network); the values are drawn
from the field's type (every enum member, both booleans, a few numbers, a nested model's combinations: the first
ones the spec accepts). It follows that spec through a real database row and back, the API's answer, the sweep
table's configuration key, the client's types and the CLI's `run` options. A new field of the spec that one of
them missed fails here by name.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from sqlalchemy import select
from typer.testing import CliRunner

import epochal.cli.experiments as cli_experiments
from api.main import app
from api.reports.sweep_table import configuration_key
from api.schemas.experiments import ExperimentCreate, ExperimentRead
from api.schemas.stored_spec import stored_annotation
from config import get_settings
from epochal.cli import app as cli_app
from epochal.cli.spec_options import spec_fields
from epochal.client.types import Experiment as ClientExperiment
from epochal.client.types import ExperimentRequest
from models import DatasetStatus, DatasetVersion
from models.accounts import create_user
from models.datasets import info_of
from models.db import session_scope
from models.specs import SPEC_COLUMNS, experiment_from_spec, resolved_value, spec_of, stored_value, value_types
from models.tables import Experiment
from training.spec import Dataset, DatasetInfo, ExperimentSpec

FIELDS = list(ExperimentSpec.model_fields)
# An uploaded dataset in two ready versions: what a built-in cannot vary (its version) varies on it.
UPLOADED = "uploaded"


def uploaded_row(version: int, owner_id: int | None = None) -> DatasetVersion:
    return DatasetVersion(
        name=UPLOADED,
        version=version,
        owner_id=owner_id,
        status=DatasetStatus.READY,
        class_names=["a", "b", "c"],
        counts={"train": {"a": 3, "b": 3, "c": 3}, "test": {"a": 1, "b": 1, "c": 1}},
        input_shape=[8, 8, 1],
        fit="resize",
        color_mode="grayscale",
        held_out=True,
        images=12,
        source_format="zip",
        blob_sha256=f"{version:064x}",
        content_sha256=f"{version + 10:064x}",
    )


def uploaded(name: str, version: int | None) -> DatasetInfo:
    assert name == UPLOADED
    return info_of(uploaded_row(version or 2))


def validated(data: dict[str, Any]) -> ExperimentSpec:
    """A spec, checked against a built-in or the uploaded dataset above."""
    return ExperimentSpec.with_datasets(data, uploaded)


def _candidates(field: FieldInfo) -> Iterator[Any]:
    """Values of the field's type: what a spec may hold there, valid or not (the spec decides)."""
    for kind in value_types(field):
        if isinstance(kind, type) and issubclass(kind, Enum):
            yield from (member.value for member in kind)
        elif kind is bool:
            yield from (True, False)
        elif kind is int:
            yield from (1, 2, 3, 7, 100, 1234)
        elif kind is float:
            yield from (0.25, 0.5, 0.003)
        elif kind is str:
            yield from field.examples or ["a name"]
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            extra = kind.model_config.get("json_schema_extra")
            examples = extra.get("examples") if isinstance(extra, dict) else None
            yield from examples if isinstance(examples, list) else []  # a network graph's example
            parts = {name: list(_candidates(part)) for name, part in kind.model_fields.items()}
            for combination in itertools.product(*parts.values()):
                yield dict(zip(parts, combination, strict=True))


def _json(spec: ExperimentSpec, name: str) -> Any:
    return TypeAdapter(stored_annotation(name)).dump_python(resolved_value(spec, name), mode="json")


def variants(name: str) -> list[tuple[ExperimentSpec, ExperimentSpec]]:
    """(a dataset's default spec, the same spec with field `name` changed): two per dataset at most."""
    found = []
    if name == "dataset_version":
        return [(validated({"dataset": f"{UPLOADED}@1"}), validated({"dataset": f"{UPLOADED}@2"}))]
    for dataset in Dataset:
        base = ExperimentSpec(dataset=dataset)
        changed = []
        for value in _candidates(ExperimentSpec.model_fields[name]):
            try:
                spec = ExperimentSpec.model_validate({"dataset": base.dataset, name: value})
            except ValidationError:
                continue
            if _json(spec, name) != _json(base, name):
                changed.append((base, spec))
            if len(changed) == 2:
                break
        found += changed
    return found


@pytest.fixture
def stored(db: str) -> Iterator[Any]:
    """Writes a spec's row to the database and reads it back in a new session."""
    with session_scope() as session:
        owner_id = create_user(session, "spec-fields")[0].id
        if session.scalar(select(DatasetVersion.id).where(DatasetVersion.name == UPLOADED)) is None:
            session.add_all([uploaded_row(1, owner_id), uploaded_row(2, owner_id)])

    def store(spec: ExperimentSpec) -> Experiment:
        with session_scope() as session:
            row = experiment_from_spec(spec)
            row.owner_id, row.queue = owner_id, get_settings().default_queue
            session.add(row)
            session.flush()
            experiment_id = row.id
        with session_scope() as session:
            read = session.scalars(select(Experiment).where(Experiment.id == experiment_id)).one()
            ExperimentRead.of(read)  # loads what the answer reads while the session is open
            session.expunge(read)
            return read

    yield store


@pytest.mark.parametrize("name", FIELDS)
def test_the_field_has_values_that_change_it(name: str) -> None:
    # Without them the tests below would have nothing to follow.
    assert variants(name), f"no value of {name}'s type changes a default spec: give _candidates one"


@pytest.mark.parametrize("name", FIELDS)
def test_the_field_goes_through_the_row_and_back(name: str, stored: Any) -> None:
    for base, spec in variants(name):
        row = stored(spec)
        assert stored_value(row, name) == resolved_value(spec, name)
        again = spec_of(row)
        assert getattr(again, name) == resolved_value(spec, name)
        assert again == validated({**spec.model_dump(), "learning_rate": again.learning_rate})
        assert set(SPEC_COLUMNS[name]) <= set(Experiment.__table__.c.keys())
        # The one it differs from stays as it was: the field alone changed.
        assert stored_value(stored(base), name) != stored_value(row, name)


@pytest.mark.parametrize("name", FIELDS)
def test_the_field_is_in_the_answer(name: str, stored: Any) -> None:
    for _base, spec in variants(name):
        answer = ExperimentRead.of(stored(spec)).model_dump(mode="json")
        assert answer[name] == _json(spec, name)


def test_the_answer_and_the_request_carry_every_field_of_the_spec_in_the_document() -> None:
    with TestClient(app) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(FIELDS) <= set(schemas["ExperimentRead"]["properties"])
    assert set(FIELDS) <= set(schemas["ExperimentRead"]["required"])  # an answer has every field, null or not
    assert set(FIELDS) <= set(schemas["ExperimentCreate"]["properties"]) == set(ExperimentCreate.model_fields)


@pytest.mark.parametrize("name", FIELDS)
def test_the_field_sets_a_configuration_of_the_sweep_table_apart(name: str, stored: Any) -> None:
    for base, spec in variants(name):
        assert configuration_key(stored(base)) != configuration_key(stored(spec))
        assert configuration_key(stored(base)) == configuration_key(stored(base))  # by value, not by row


@pytest.mark.parametrize("name", FIELDS)
def test_the_field_is_in_the_clients_types(name: str) -> None:
    # Their types and optionality are held to the document by tests/test_client_types.py.
    assert name in get_type_hints(ClientExperiment)
    assert name in get_type_hints(ExperimentRequest)


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `epochal run` would POST, caught before it leaves: the CLI's options alone are under test."""
    bodies: list[dict[str, Any]] = []

    class Caught:
        def __enter__(self) -> Caught:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def submit(self, body: dict[str, Any]) -> dict[str, Any]:
            bodies.append(body)
            return {"id": 1, "status": "queued"}

    monkeypatch.setattr(cli_experiments, "connect", lambda ctx: Caught())
    return bodies


def _arguments(name: str, value: Any, folder: Path) -> list[str]:
    """`epochal run` options giving field `name` the JSON value `value` (a nested object part by part, an object
    that the field may hold instead of a name as a file)."""
    paths = {option: path for option, path in spec_fields().items() if path[0] == name}
    arguments = []
    for option, path in paths.items():
        part = value if len(path) == 1 else value[path[1]]
        flag = "--" + option.replace("_", "-")
        if isinstance(part, dict):
            file = folder / f"{option}.json"
            file.write_text(json.dumps(part))
            arguments += [flag, str(file)]
        elif isinstance(part, bool):
            arguments.append(flag if part else f"--no-{flag[2:]}")
        else:
            arguments += [flag, str(part)]
    return arguments


@pytest.mark.parametrize("name", FIELDS)
def test_the_field_is_an_option_of_epochal_run(name: str, submitted: list[dict[str, Any]], tmp_path: Path) -> None:
    for _base, spec in variants(name):
        value = _json(spec, name)
        if value is None:
            continue  # an option left out is the field left to its default: nothing to send
        result = CliRunner().invoke(cli_app, ["run", *_arguments(name, value, tmp_path), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(json.dumps(submitted[-1][name])) == value


def test_the_options_come_with_help_naming_an_enums_values() -> None:
    result = CliRunner().invoke(cli_app, ["run", "--help"])
    assert result.exit_code == 0
    shown = " ".join(result.output.split())
    assert "--jit-compile / --no-jit-compile" in shown
    assert (
        "--loss <str> binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy or mse." in shown
    )
    assert "--network <str> mlp or convnet. Default: the dataset's." in shown
