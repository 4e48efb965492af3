"""`epochal networks ...`: the preset networks, and checking a network graph from a file before running it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from epochal.cli.context import connect, out, print_json, read_document
from epochal.cli.render import network_figures_table, network_summary_table, presets_table

app = typer.Typer(help="Networks: the presets, and checking a graph of your own.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of tables, for scripts.")]


def network_argument(value: str) -> str | dict[str, Any]:
    """What a network option or argument names: the graph in the file at `value` (JSON or YAML), else a preset's
    name as given (the API says which names there are)."""
    path = Path(value)
    if not path.is_file():
        return value
    document = read_document(path)
    # A spec file holds its network under `network`: it can be checked as it is.
    inner = document.get("network")
    if "layers" not in document and isinstance(inner, dict | str):
        return inner
    return document


def head_option(value: str | None) -> dict[str, Any] | None:
    """--head as UNITS or UNITS:ACTIVATION (`1:sigmoid`), or the head's JSON object."""
    if value is None:
        return None
    if value.lstrip().startswith("{"):
        try:
            head = json.loads(value)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"{value!r} is not a JSON object ({exc.msg})", param_hint="--head") from exc
        if not isinstance(head, dict):
            raise typer.BadParameter(f"{value!r} is not a JSON object", param_hint="--head")
        return head
    units, _, activation = value.partition(":")
    if not units.strip().isdigit():
        raise typer.BadParameter(
            f"{value!r}: give the head as UNITS or UNITS:ACTIVATION (e.g. 10:softmax, 1:sigmoid)", param_hint="--head"
        )
    return {"units": int(units), "activation": activation.strip() or "softmax"}


def shape_option(value: str | None) -> list[int] | None:
    """--input-shape as comma-separated sides: 28,28,1."""
    if value is None:
        return None
    try:
        return [int(side) for side in value.split(",")]
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: give the shape as sides, e.g. 150,150,3", param_hint="--input-shape"
        ) from None


@app.command("ls")
def list_networks(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The preset networks (GET /networks), with their parameters on each dataset they take."""
    with connect(ctx) as client:
        presets = client.networks()
    if as_json:
        print_json(presets)
        return
    out.print(presets_table(presets))


@app.command("check")
def check(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Argument(help="A JSON or YAML file holding the graph (or a spec with its network), or a preset.")
    ],
    dataset: Annotated[str | None, typer.Option(help="Check against this dataset's input and classes.")] = None,
    input_shape: Annotated[str | None, typer.Option(help="Or against this shape: 150,150,3.")] = None,
    head: Annotated[str | None, typer.Option(help="The output layer: UNITS or UNITS:ACTIVATION (1:sigmoid).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="For the activation memory of a batch (default 32).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a network (POST /networks/check) without queueing anything: Keras' summary of it, its parameters,
    FLOPs per example and activation memory, against your limits. A network that does not fit its input, or is
    over a limit, exits 1 with the API's message."""
    with connect(ctx) as client:
        answer = client.check_network(
            network_argument(file),
            dataset=dataset,
            input_shape=shape_option(input_shape),
            head=head_option(head),
            batch_size=batch_size,
        )
    if as_json:
        print_json(answer)
        return
    out.print(network_summary_table(answer))
    out.print(network_figures_table(answer))
