"""Commands about the service itself: its health, and the server-side `serve`, `users`, `keys`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from epochal.cli.context import connect, out, print_json

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of tables, for scripts.")]
# The server's own commands keep their argparse parser: everything after the name goes to it unchanged.
PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def health(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Whether the service's database and broker answer (no key needed)."""
    with connect(ctx) as client:
        body = client.health()
    if as_json:
        print_json(body)
        return
    database, broker = body["database"]["detail"], body["broker"]["detail"]
    out.print(f"{client.url}: {body['status']} (database: {database}, broker: {broker})")


def _server_command(name: str) -> None:
    # Imported here: the service's code (config, database, Celery) is needed by these commands only.
    from epochal.__main__ import main as server_main

    sys.argv = ["epochal", name, *sys.argv[sys.argv.index(name) + 1 :]]
    raise typer.Exit(server_main())


def serve(ctx: typer.Context) -> None:
    """Run the broker, a worker and the API on this machine (as `python -m epochal serve`; --help for options)."""
    _server_command("serve")


def users(ctx: typer.Context) -> None:
    """On the server, in the database: users create NAME [--admin], users list (as `python -m epochal users`)."""
    _server_command("users")


def keys(ctx: typer.Context) -> None:
    """On the server, in the database: keys create USER, keys revoke KEY_ID (as `python -m epochal keys`)."""
    _server_command("keys")


def register(app: typer.Typer) -> None:
    app.command()(health)
    for command in (serve, users, keys):
        app.command(context_settings=PASSTHROUGH, add_help_option=False, rich_help_panel="On the server")(command)
