"""The `epochal` command: the REST API for people, on the Python client (epochal.client).

    epochal run --dataset mnist --optimizer adam --epochs 10 --watch
    epochal ls --status succeeded --json
    epochal show 3
    epochal models register digits 3 --alias production
    epochal networks check net.yaml --dataset cats_vs_dogs
    epochal datasets push flowers/ --name flowers --wait

Exit codes: 0 success; 1 an API error (its status and message are printed as they are), a job that did
not succeed, or a service out of reach; 2 a usage error; 130 interrupted.
"""

from __future__ import annotations

import sys

import typer

from epochal.cli import datasets, experiments, models, networks, samples, service, sweeps
from epochal.cli.context import Connection, KeyOption, UrlOption, err, with_connection_options
from epochal.client import ApiError, EpochalError, RateLimited, Unavailable

app = typer.Typer(
    name="epochal",
    help="Train Keras networks on an Epochal service, follow them, and read the results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def options(ctx: typer.Context, url: UrlOption = None, key: KeyOption = None) -> None:
    ctx.obj = Connection(url, key)


experiments.register(app)
app.add_typer(sweeps.app, name="sweep")
app.add_typer(models.app, name="models")
app.add_typer(networks.app, name="networks")
app.add_typer(datasets.app, name="datasets")
service.register(app)
# --url and --key after the command too; not for the server's own commands, which pass their arguments on.
for group in (app, sweeps.app, models.app, networks.app, datasets.app):
    for command in group.registered_commands:
        if command.callback is not None and command.context_settings is not service.PASSTHROUGH:
            command.callback = with_connection_options(command.callback)
app.command()(samples.samples)  # reads the data folder: no service to connect to


def _explain(error: EpochalError) -> str:
    if isinstance(error, ApiError):
        text = f"error {error.status}: {error.message}"
        if error.hint:  # which service answered a 401, or how long a 429 or 503 was retried
            text += f"\n  {error.hint}"
        elif isinstance(error, RateLimited | Unavailable) and error.retry_after is not None:
            text += f" (retry after {error.retry_after:g}s)"
        return text
    return f"error: {error}"


def main() -> None:
    """The console script: API errors become their message on stderr and exit code 1, not a traceback."""
    try:
        app()
    except EpochalError as error:
        err.print(_explain(error), markup=False, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
