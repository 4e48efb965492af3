"""`epochal run`'s options, one per field of the client's `ExperimentRequest`, so a field of the spec is an option
without being written here: `--batch-size`, a nested object's fields as `--head-units` and `--head-activation`,
a boolean as `--deterministic/--no-deterministic`, and an enum's help listing its values.

The CLI talks HTTP only, like the client: it knows the spec through the client's types, which
tests/test_client_types.py holds to the API's document. Values are passed on as given: the API checks them, and
its 422 says what is wrong.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import typer

from epochal.cli.context import read_document
from epochal.client.types import ExperimentRequest

# Words an option's help adds to what its type says (the enum's values are listed from the type).
MORE_HELP = {
    "network": "Default: the dataset's. Graphs: GET /networks.",
    "head_units": "Output units: 1, or one per class.",
    "train_size": "Train on this many examples only.",
    "validation": "What selects the best epoch.",
    "queue": "The Celery queue to run on.",
    "repeats": "Train it this many times, with distinct seeds.",
    "lr_schedule": 'Its type: constant, step, exponential, cosine or plateau (e.g. \'{"type": "cosine"}\').',
    "class_weight": "Weights by class name or index.",
}


def _members(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for m in get_args(annotation) if m is not type(None)]
    return [annotation]


def _plain(annotation: Any) -> Any:
    """`annotation` without None: the type a given option has (a name or an object: the name's Literal)."""
    members = _members(annotation)
    names = [m for m in members if get_origin(m) is Literal]
    return members[0] if len(members) == 1 else names[0] if len(names) == 1 else Any


def _takes_an_object(annotation: Any) -> bool:
    """Whether the field may hold a JSON object (a network graph, a schedule, weights by class): the option then
    takes a file of it, or the object's JSON itself."""
    return any(get_origin(m) is dict for m in _members(annotation))


def spec_fields(request: Any = ExperimentRequest) -> dict[str, tuple[str, ...]]:
    """Option name -> where its value goes in the request body (`("head", "units")` for --head-units)."""
    paths: dict[str, tuple[str, ...]] = {}
    for field, annotation in get_type_hints(request).items():
        plain = _plain(annotation)
        if is_typeddict(plain):
            paths.update({f"{field}_{part}": (field, part) for part in get_type_hints(plain)})
        else:
            paths[field] = (field,)
    return paths


def _hint(path: tuple[str, ...], request: Any) -> Any:
    annotation: Any = request
    for part in path:
        annotation = _plain(get_type_hints(annotation)[part])
    return annotation


def choices(literal: Any) -> str:
    """A Literal's values in words: "a, b or c"."""
    values = [str(v) for v in get_args(literal)]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def _annotation(path: tuple[str, ...], request: Any) -> Any:
    parent = request if len(path) == 1 else _hint(path[:-1], request)
    return get_type_hints(parent)[path[-1]]


def _parameter(name: str, path: tuple[str, ...], request: Any) -> inspect.Parameter:
    kind = _hint(path, request)
    words = [f"{choices(kind)}." if get_origin(kind) is Literal else "", MORE_HELP.get(name, "")]
    if _takes_an_object(_annotation(path, request)):
        alone = len(_members(_annotation(path, request))) == 1
        words.append(("A" if alone else "Or a") + " JSON or YAML file holding the object, or its JSON.")
    help_text = " ".join(w for w in words if w) or None
    flag = f"--{name.replace('_', '-')}"
    if kind is bool:
        option = typer.Option(f"{flag}/--no-{flag[2:]}", help=help_text)
    else:
        option = typer.Option(flag, help=help_text)
    python_type = str if get_origin(kind) is Literal else kind if kind in (int, float, str, bool) else str
    # Positional-or-keyword, as the command's own options are: Typer passes every one by name.
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[python_type | None, option]
    )


def request_body(
    options: Mapping[str, Any], base: Mapping[str, Any], request: Any = ExperimentRequest
) -> dict[str, Any]:
    """`base` (a spec file's fields) with the options given over it; a nested object is merged part by part."""
    body = dict(base)
    for name, path in spec_fields(request).items():
        value = options.get(name)
        if value is None:
            continue
        if _takes_an_object(_annotation(path, request)):
            value = _object_or_value(value)
        if len(path) == 1:
            body[path[0]] = value
        else:
            body[path[0]] = {**(body.get(path[0]) or {}), path[1]: value}
    return body


def _object_or_value(value: str) -> Any:
    """An object option's value: the object in the file it names, the object written inline, or the word given."""
    if value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"{value!r} is not a JSON object ({exc.msg}); or give a file holding one") from exc
    return read_document(Path(value)) if Path(value).is_file() else value


def with_spec_options(command: Callable[..., Any], request: Any = ExperimentRequest) -> Callable[..., Any]:
    """`command` taking one option per field of `request`; it receives them together as `spec_options` (a dict of
    the option name -> its value, None when not given)."""
    fields = spec_fields(request)
    signature = inspect.signature(command, eval_str=True)
    if "spec_options" not in signature.parameters:
        raise TypeError(f"{command.__name__} needs a `spec_options` parameter to receive the spec's options")

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in fields if name in kwargs}
        return command(*args, spec_options=given, **kwargs)

    own = [p for p in signature.parameters.values() if p.name != "spec_options"]
    added = [_parameter(name, path, request) for name, path in fields.items()]
    wrapper.__name__, wrapper.__doc__, wrapper.__module__ = command.__name__, command.__doc__, command.__module__
    # The context first, then the spec's options, then the command's own (--spec, --watch, ...).
    leading = [p for p in own if p.default is inspect.Parameter.empty]
    trailing = [p for p in own if p.default is not inspect.Parameter.empty]
    wrapper.__signature__ = signature.replace(parameters=[*leading, *added, *trailing])  # type: ignore[attr-defined]
    hints = {k: v for k, v in get_type_hints(command, include_extras=True).items() if k != "spec_options"}
    wrapper.__annotations__ = {**hints, **{p.name: p.annotation for p in added}}
    return wrapper
