"""`epochal models ...`: register experiments as versions of a named model, move its aliases, predict with it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from epochal.cli.context import connect, out, print_json
from epochal.cli.render import fmt
from epochal.client import NotFound
from epochal.client.types import Model, Prediction

app = typer.Typer(help="Models: named, versioned checkpoints with aliases such as production.", no_args_is_help=True)

MAX_BATCH = 64  # the API's limit on images in one batch request
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of tables, for scripts.")]
ModelName = Annotated[str, typer.Argument(help="The model's name.")]


@app.command("register")
def register(
    ctx: typer.Context,
    name: ModelName,
    experiment_id: Annotated[int, typer.Argument(help="Your succeeded experiment whose checkpoint it becomes.", min=1)],
    public: Annotated[bool, typer.Option("--public", help="A new model every user can read and predict with.")] = False,
    description: Annotated[str | None, typer.Option(help="What a new model is for.")] = None,
    alias: Annotated[str | None, typer.Option(help="Point this alias (e.g. production) at the new version.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add the experiment as the model's next version, creating the model first if you have none of that name."""
    with connect(ctx) as client:
        try:
            client.model(name)
        except NotFound:
            client.create_model(name, visibility="public" if public else "private", description=description)
        version = client.register_version(name, experiment_id)
        if alias is not None:
            client.set_alias(name, alias, version["number"])
            version = client.model_version(name, version["number"])
    if as_json:
        print_json(version)
        return
    aliases = f" ({', '.join('@' + a for a in version['aliases'])})" if version["aliases"] else ""
    out.print(f"{name}: version {version['number']}{aliases} from experiment {experiment_id}")


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: ModelName,
    version: Annotated[int, typer.Argument(help="The version number the alias is to point at.", min=1)],
    alias: Annotated[str, typer.Option(help="Which alias to move.")] = "production",
    as_json: JsonFlag = False,
) -> None:
    """Point an alias (production unless --alias) at a version; every move is kept with who and when."""
    with connect(ctx) as client:
        move = client.set_alias(name, alias, version)
    if as_json:
        print_json(move)
        return
    before = "nothing" if move["from_version"] is None else f"version {move['from_version']}"
    out.print(f"{name}@{alias}: {before} -> version {move['to_version']}")


def _models_table(models: Sequence[Model]) -> Table:
    table = Table("model", "owner", "visibility", "latest", "aliases", title="models")
    for model in models:
        shown = ", ".join(f"{alias}={version}" for alias, version in sorted(model["aliases"].items()))
        table.add_row(model["name"], model["owner"], model["visibility"], fmt(model["latest_version"]), shown)
    return table


@app.command("ls")
def list_models(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Your models and every public one."""
    with connect(ctx) as client:
        models = client.models()
    if as_json:
        print_json(models)
        return
    out.print(_models_table(models))


@app.command("show")
def show(
    ctx: typer.Context,
    name: ModelName,
    card: Annotated[int | None, typer.Option(help="Print this version's model card (JSON) instead.", min=1)] = None,
    as_json: JsonFlag = False,
) -> None:
    """A model: its versions, where each alias points, and every move of the aliases."""
    with connect(ctx) as client:
        if card is not None:
            print_json(client.model_card(name, card))
            return
        model = client.model(name)
    if as_json:
        print_json(model)
        return
    out.print(_models_table([model]))
    versions = Table("version", "experiment", "aliases", "registered", "sha256", title="versions")
    for v in model["versions"]:
        versions.add_row(
            str(v["number"]),
            str(v["experiment_id"]),
            ", ".join(v["aliases"]),
            v["created_at"],
            v["checkpoint_sha256"][:12],
        )
    out.print(versions)
    history = Table("alias", "from", "to", "by user", "when", title="alias moves")
    for m in model["history"]:
        history.add_row(m["alias"], fmt(m["from_version"]), fmt(m["to_version"]), str(m["moved_by"]), m["moved_at"])
    out.print(history)


@app.command("predict")
def predict(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (its production alias), NAME@ALIAS or NAME:VERSION.")],
    images: Annotated[list[Path], typer.Argument(help="PNG or JPEG images.")],
    as_json: JsonFlag = False,
) -> None:
    """Classify images with a model's version."""
    predictions: list[Prediction] = []
    with connect(ctx) as client:
        for start in range(0, len(images), MAX_BATCH):
            predictions += client.predict_batch_model(ref, list(images[start : start + MAX_BATCH]))
    if as_json:
        print_json([{"image": str(image), **p} for image, p in zip(images, predictions, strict=True)])
        return
    for image, p in zip(images, predictions, strict=True):
        confidence = (p["probabilities"] or {}).get(p["label"])
        shown = f" ({confidence:.1%})" if confidence is not None else ""
        out.print(f"{image}: [bold]{p['label']}[/]{shown}  {ref} (experiment {p['experiment_id']})")
