"""The ``sian`` command: the app, its global options, and its subcommands (:mod:`sian.commands`)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from typer.core import TyperGroup

from ._allocator import keep_freed_memory
from ._progress import BarSafeHandler
from .commands import evaluation, images, service, training, weights
from .commands._common import OPTIONS

GLOBAL_FLAGS = ("--quiet", "-q", "--verbose", "-v")


class _GlobalFlagsAnywhere(TyperGroup):
    """``sian derain --verbose ...`` as well as ``sian --verbose derain ...``: click parses a group's own options
    only before the command name, so the global flags found after it (up to a ``--``) are moved in front."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
        rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
        return super().parse_args(ctx, flags + rest + args[end:])


app = typer.Typer(
    cls=_GlobalFlagsAnywhere,
    help="Single-image deraining with SIAN (Pang et al., arXiv 2006.05049) and the PReNet baseline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
weights_app = typer.Typer(help="List, import and download named weights.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@app.callback()
def _main(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors; no progress bars.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also debug details (precision, device).")] = False,
) -> None:
    """Single-image deraining with SIAN (Pang et al., arXiv 2006.05049) and the PReNet baseline."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = BarSafeHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    # --verbose is sian's debug lines only: other libraries stay at INFO (PIL's PNG decoder alone would print a
    # line per chunk of every image read).
    logging.basicConfig(level=max(level, logging.INFO), handlers=[handler], force=True)
    logging.getLogger("sian").setLevel(level)
    # The commands derain, train and serve in loops: keep freed memory for reuse (sian._allocator). The library
    # leaves a host program's allocator alone; the command is its own process.
    keep_freed_memory()
    OPTIONS["quiet"] = quiet


for name, command in {
    "derain": images.derain_command,
    "demo": images.demo_command,
    "explain": images.explain_command,
    "eval": evaluation.eval_command,
    "bench": evaluation.bench_command,
    "train": training.train_command,
    "synth": training.synth_command,
    "serve": service.serve_command,
    "export": service.export_command,
    "models": weights.models_command,
}.items():
    # train passes key=value overrides through to its config.
    extra = {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True}} if name == "train" else {}
    app.command(name, **extra)(command)
weights_app.command("list")(weights.weights_list)
weights_app.command("import")(weights.weights_import)
weights_app.command("download")(weights.weights_download)
