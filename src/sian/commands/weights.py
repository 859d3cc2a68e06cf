"""``sian weights`` and ``sian models``: named weights and model variants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..convert import download_weights, import_weights
from ..hub import list_weights, weights_dir
from ..models import get_variant, list_models
from ..weights import WeightsError
from ._common import fail


def weights_list() -> None:
    """Show the registered weights and whether each is installed."""
    typer.echo(f"weights folder: {weights_dir()}  (set SIAN_HOME to move it)")
    rows = list_weights()
    width = max(len(name) for name in ["name", *(row.name for row in rows)]) + 2  # names never run on
    typer.echo(f"{'name':{width}}{'model':8}{'installed':11}{'result':15}dataset")
    for row in rows:
        line = f"{row.name:{width}}{row.arch:8}{row.installed:11}{row.reference:15}{row.dataset}"
        typer.secho(line, fg=typer.colors.YELLOW if row.installed == "unreadable" else None)


def weights_import(
    file: Annotated[Path, typer.Argument(help="An authors' .pth checkpoint (SIAN or PReNet).")],
    name: Annotated[str, typer.Option(help="Registered name (hash-checked) or a name of your own.")],
    variant: Annotated[str | None, typer.Option(help=f"Model variant: {', '.join(list_models())}.")] = None,
    force: Annotated[bool, typer.Option(help="Import even if the hash differs from the registered file.")] = False,
    trust_pickle: Annotated[bool, typer.Option(help="Allow full unpickling (runs code from the file).")] = False,
) -> None:
    """Convert a checkpoint to safetensors in the weights folder."""
    try:
        path = import_weights(file, name, variant, force=force, trust_pickle=trust_pickle)
    except (WeightsError, KeyError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"imported {file} as {name!r}: {path}")


def weights_download(name: Annotated[str, typer.Argument(help="A registered weights name.")]) -> None:
    """Download a registered authors' file (needs network), check its hash and import it."""
    try:
        path = download_weights(name)
    except WeightsError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"downloaded and imported {name!r}: {path}")


def models_command() -> None:
    """List the registered model variants."""
    for name in list_models():
        typer.echo(f"{name:20}{get_variant(name).description}")
