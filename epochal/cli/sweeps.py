"""`epochal sweep ...`: run a grid of experiments from a file, follow it, and rank the results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from epochal.cli.context import connect, err, out, print_json, read_document
from epochal.cli.live import follow_sweep, sweep_rows
from epochal.cli.render import sweep_view

app = typer.Typer(help="Sweeps: one experiment per combination of a grid.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of tables, for scripts.")]
SweepId = Annotated[int, typer.Argument(help="The sweep's id.", min=1)]


@app.command("run")
def run_sweep(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="YAML or JSON: name, base (a spec), grid (field: [values]), repeats.")],
    watch: Annotated[bool, typer.Option("--watch", help="Follow it live, then print the ranked table.")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks while watching.", min=0.1)] = 2.0,
    as_json: JsonFlag = False,
) -> None:
    """Create a sweep (POST /sweeps); with --watch, exit 0 only if every experiment succeeded."""
    body = read_document(file)
    with connect(ctx) as client:
        sweep = client.create_sweep(body)
        if not watch:
            if as_json:
                print_json(sweep)
            else:
                out.print(sweep_rows(sweep))
                out.print(f"follow it: epochal sweep show {sweep['id']}")
            return
        try:
            sweep = follow_sweep(client, sweep["id"], err if as_json else out, poll)
        except KeyboardInterrupt:
            err.print(f"\nstopped watching; sweep {sweep['id']} goes on (`epochal sweep show {sweep['id']}`)")
            raise typer.Exit(130) from None
    if as_json:
        print_json(sweep)
    else:
        out.print(sweep_view(sweep))
    all_succeeded = sweep["status_counts"].get("succeeded", 0) == len(sweep["experiments"])
    raise typer.Exit(0 if all_succeeded else 1)


@app.command("show")
def show_sweep(ctx: typer.Context, sweep_id: SweepId, as_json: JsonFlag = False) -> None:
    """A sweep: each experiment's state (a queued one's place in the queue), and the runs ranked by best validation
    accuracy."""
    with connect(ctx) as client:
        sweep = client.sweep(sweep_id)
        if as_json:
            print_json(sweep)
            return
    out.print(sweep_rows(sweep))
    out.print(sweep_view(sweep))


@app.command("ls")
def list_sweeps(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option()] = 20,
    offset: Annotated[int, typer.Option()] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Your sweeps, newest first."""
    with connect(ctx) as client:
        sweeps = client.sweeps(limit=limit, offset=offset)
    if as_json:
        print_json(sweeps)
        return
    for sweep in sweeps:
        counts = ", ".join(f"{n} {status}" for status, n in sweep["status_counts"].items() if n)
        out.print(f"sweep {sweep['id']}" + (f" ({sweep['name']})" if sweep["name"] else "") + f": {counts}")
