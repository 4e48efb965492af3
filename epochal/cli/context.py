"""What every command shares: the connection options, JSON output, and how files and errors are shown."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
import yaml
from rich.console import Console

from epochal.client import DEFAULT_URL, Client

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


# One definition of the connection options, taken before the command (`epochal --url U ls`) and after it
# (`epochal ls --url U`, what people type); given after, they win.
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help=f"The service; default: EPOCHAL_URL, else {DEFAULT_URL}.", show_default=False),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key", help="API key; default: EPOCHAL_API_KEY, else <EPOCHAL_STATE_DIR>/api-key.", show_default=False
    ),
]


@dataclass(frozen=True)
class Connection:
    """The --url and --key given with the command; None falls back to the environment (see `Client`)."""

    url: str | None = None
    key: str | None = None

    def client(self) -> Client:
        return Client(self.url, self.key)


def with_connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with --url and --key of its own, over those given before it (Click's options belong to one level:
    this is argparse's `parents` for Typer). The command reads them as always, through `connect(ctx)`."""

    @functools.wraps(command)
    def wrapper(*args: Any, url: str | None = None, key: str | None = None, **kwargs: Any) -> Any:
        if url is not None or key is not None:
            ctx = kwargs["ctx"]
            before = ctx.find_object(Connection) or Connection()
            ctx.obj = Connection(url or before.url, key or before.key)
        return command(*args, **kwargs)

    signature = inspect.signature(command, eval_str=True)
    if "ctx" not in signature.parameters:
        raise TypeError(f"{command.__name__} needs a `ctx: typer.Context` parameter to take --url and --key")
    added = [
        inspect.Parameter("url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=UrlOption),
        inspect.Parameter("key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=KeyOption),
    ]
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**get_type_hints(command, include_extras=True), "url": UrlOption, "key": KeyOption}
    return wrapper


def connect(ctx: typer.Context) -> Client:
    connection = ctx.find_object(Connection) or Connection()
    return connection.client()


def print_json(body: Any) -> None:
    # Plain stdout, not Rich: a program reading it wants the JSON untouched by wrapping or colour.
    sys.stdout.write(json.dumps(body, indent=2) + "\n")


def read_document(path: Path) -> dict[str, Any]:
    """A JSON or YAML file holding one object (YAML is a superset of JSON, so one parser reads both)."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise typer.BadParameter(f"cannot read {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise typer.BadParameter(f"{path} is not valid JSON or YAML: {error}") from error
    if not isinstance(document, dict):
        raise typer.BadParameter(f"{path} must hold one object (field: value), not {type(document).__name__}")
    return document
