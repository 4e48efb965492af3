"""What every command shares: the connection options, JSON output, and how files and errors are shown."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from epochal.client import Client

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class Connection:
    """The --url and --key given before the command; None falls back to the environment (see `Client`)."""

    url: str | None = None
    key: str | None = None

    def client(self) -> Client:
        return Client(self.url, self.key)


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
