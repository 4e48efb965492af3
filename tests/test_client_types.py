"""The client's types (epochal/client/types.py) held to the API's own document, so that they cannot drift.

The client talks HTTP only and cannot import the schemas it mirrors; here every TypedDict it declares is read
against the component of /openapi.json it stands for: each field exists there, with the same type, the same
nullability, the same enum values, and is required where the API always sends it (NotRequired where it may not).
"""

from __future__ import annotations

import types
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from fastapi.testclient import TestClient

from api.main import app
from epochal.client import types as client_types

# The client's name -> the component it mirrors.
COMPONENT = {
    "Head": "Head",
    "EarlyStopping": "EarlyStopping",
    "ExperimentRequest": "ExperimentCreate",
    "Summary": "ExperimentSummary",
    "Experiment": "ExperimentRead",
    "ExperimentPage": "ExperimentPage",
    "EpochMetric": "EpochMetricRead",
    "ConfusionMatrix": "ConfusionMatrixRead",
    "Evaluation": "EvaluationRead",
    "Artifact": "ArtifactRead",
    "Prediction": "PredictionRead",
    "Dataset": "DatasetRead",
    "DatasetProblem": "DatasetError",
    "DatasetVersion": "DatasetVersionRead",
    "DatasetDetail": "DatasetDetail",
    "DependencyState": "DependencyState",
    "Health": "HealthRead",
    "ComparisonRow": "ComparisonRow",
    "Sweep": "SweepRead",
    "Key": "KeyRead",
    "NewKey": "KeyCreated",
    "User": "UserRead",
    "Me": "MeRead",
    "Storage": "StorageRead",
    "NewUser": "UserCreated",
    "Model": "ModelRead",
    "ModelVersion": "VersionRead",
    "AliasMove": "AliasMoveRead",
    "ModelDetail": "ModelDetail",
    "NetworkFigures": "NetworkFigures",
    "NetworkPreset": "NetworkPresetRead",
    "NetworkLayer": "LayerSummary",
    "NetworkLimits": "NetworkLimitsRead",
    "NetworkCheck": "NetworkCheckRead",
}
# Fields the client reads as possibly absent though the document requires them, and why.
LENIENT = {
    # Also read from the epoch events of /experiments/{id}/events, whose payloads older workers sent without it.
    ("EpochMetric", "attempt"),
}
# Components the client keeps as plain JSON objects (dict[str, Any]), whatever their fields: a network graph's
# vocabulary is the API's to check (POST /networks/check), not the client's to restate.
# Likewise a learning-rate schedule's types: the client sends one as an object and the API names what is wrong.
OPAQUE = {"NetworkGraph", "ConstantSchedule", "StepDecay", "ExponentialDecay", "CosineDecay", "ReduceOnPlateau"}
JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    with TestClient(app) as client:  # the document as served, not only as built
        document = client.get("/openapi.json").json()
    return dict(document["components"]["schemas"])


def typeddicts() -> dict[str, type]:
    return {name: value for name, value in vars(client_types).items() if is_typeddict(value)}


def from_client(annotation: Any) -> tuple[Any, bool]:
    """(a comparable shape of the type, whether it may be null)."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [m for m in get_args(annotation) if m is not type(None)]
        shapes = frozenset(from_client(m)[0] for m in members)
        return (next(iter(shapes)) if len(shapes) == 1 else ("one of", shapes)), type(None) in get_args(annotation)
    if get_origin(annotation) is Literal:
        return ("enum", tuple(sorted(get_args(annotation)))), False
    if get_origin(annotation) is list:
        return ("array", from_client(get_args(annotation)[0])), False
    if get_origin(annotation) is dict:
        return ("map", from_client(get_args(annotation)[1])), False
    if annotation is Any:
        return "any", False
    if is_typeddict(annotation):
        return ("object", COMPONENT[annotation.__name__]), False
    return JSON_TYPES[annotation], False


def from_document(prop: dict[str, Any], schemas: dict[str, Any]) -> tuple[Any, bool]:
    """The same shape, read off a property of the document."""
    for union in ("anyOf", "oneOf"):  # oneOf: a union told apart by a discriminator (a learning-rate schedule)
        if union in prop:
            members = [m for m in prop[union] if m != {"type": "null"}]
            shapes = frozenset(from_document(m, schemas)[0] for m in members)
            return (next(iter(shapes)) if len(shapes) == 1 else ("one of", shapes)), len(members) < len(prop[union])
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[1]
        target = schemas[name]
        if "enum" in target:
            return ("enum", tuple(sorted(target["enum"]))), False
        if name in OPAQUE:
            return ("map", ("any", False)), False
        return ("object", name), False
    if "enum" in prop:
        return ("enum", tuple(sorted(prop["enum"]))), False
    kind = prop.get("type")
    if kind == "array":
        return ("array", from_document(prop["items"], schemas)), False
    if kind == "object":
        values = prop.get("additionalProperties", True)
        return ("map", ("any", False) if values is True else from_document(values, schemas)), False
    if kind is None and not set(prop) - {"title", "description", "default"}:
        return "any", False
    return kind, False


def client_requires(typed: Any, field: str) -> bool:
    # Read off the annotation: with postponed annotations, Python 3.11's __required_keys__ misses Required[...].
    annotation = get_type_hints(typed, include_extras=True)[field]
    if get_origin(annotation) is Required:
        return True
    if get_origin(annotation) is NotRequired:
        return False
    return bool(typed.__total__)


def test_every_client_type_names_the_component_it_mirrors(schemas: dict[str, Any]) -> None:
    assert set(typeddicts()) == set(COMPONENT)
    assert set(COMPONENT.values()) <= set(schemas)


@pytest.mark.parametrize("name", sorted(COMPONENT))
def test_the_client_type_matches_the_document(name: str, schemas: dict[str, Any]) -> None:
    typed = typeddicts()[name]
    component = schemas[COMPONENT[name]]
    hints = get_type_hints(typed)
    required = set(component.get("required", []))
    assert set(hints) <= set(component["properties"]), f"{name} has fields the API does not send"
    for field, annotation in hints.items():
        shape, nullable = from_client(annotation)
        assert (shape, nullable) == from_document(component["properties"][field], schemas), f"{name}.{field}"
        requires = client_requires(typed, field)
        if (name, field) not in LENIENT:
            assert requires == (field in required), f"{name}.{field}: required in the API: {field in required}"
        else:
            assert not requires and field in required


@pytest.mark.parametrize(
    ("alias", "component"),
    [
        ("Status", "Status"),
        ("SweepState", "SweepState"),
        ("DatasetName", "Dataset"),
        ("NetworkName", "Network"),
        ("OptimizerName", "Optimizer"),
        ("ActivationName", "Activation"),
        ("LossName", "Loss"),
        ("ValidationName", "Validation"),
        ("MonitorName", "Monitor"),
        ("DatasetState", "DatasetStatus"),
        ("Fit", "Fit"),
        ("ColorMode", "ColorMode"),
    ],
)
def test_the_vocabularies_are_the_apis(alias: str, component: str, schemas: dict[str, Any]) -> None:
    assert sorted(get_args(getattr(client_types, alias))) == sorted(schemas[component]["enum"])


def test_finished_statuses_are_statuses() -> None:
    assert set(get_args(client_types.Status)) > client_types.FINISHED


def test_the_check_finds_a_drifted_type(schemas: dict[str, Any]) -> None:
    # A checker that could not tell would pass above: a wrong enum, type, nullability and field all show.
    head = schemas["Head"]["properties"]
    assert from_client(Literal["relu"]) != from_document(head["activation"], schemas)
    assert from_client(str) != from_document(head["units"], schemas)
    assert from_client(int | None) != from_document(head["units"], schemas)
    assert from_client(int) == from_document(head["units"], schemas)
    assert "depth" not in schemas["Head"]["properties"]
