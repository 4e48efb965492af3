"""The `epochal` command: the REST API for people, on the Python client (epochal.client).

    epochal run --dataset mnist --optimizer adam --epochs 10 --watch
    epochal ls --status succeeded --json
    epochal show 3

Exit codes: 0 success; 1 an API error (its status and message are printed as they are), a job that did
not succeed, or a service out of reach; 2 a usage error; 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from epochal.cli import experiments, service, sweeps
from epochal.cli.context import Connection, err
from epochal.client import ApiError, EpochalError, RateLimited, Unavailable

app = typer.Typer(
    name="epochal",
    help="Train Keras networks on an Epochal service, follow them, and read the results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def options(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="The service; default: EPOCHAL_URL, else 127.0.0.1:8000.")] = None,
    key: Annotated[
        str | None, typer.Option(help="API key; default: EPOCHAL_API_KEY, else <EPOCHAL_STATE_DIR>/api-key.")
    ] = None,
) -> None:
    ctx.obj = Connection(url, key)


experiments.register(app)
app.add_typer(sweeps.app, name="sweep")
service.register(app)


def _explain(error: EpochalError) -> str:
    if isinstance(error, ApiError):
        text = f"error {error.status}: {error.message}"
        if isinstance(error, RateLimited | Unavailable) and error.retry_after is not None:
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
