"""What every command shares: the global options' state, error exits, the report of a command's result."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from .._progress import progress_bar
from ..extras import MissingExtraError, require_extra
from ..hub import load_model
from ..inference import resolve_device
from ..io import expand_inputs
from ..weights import WeightsError

OUTPUT_FORMATS = ("png", "jpg", "bmp", "tif", "webp")


log = logging.getLogger("sian")
PRECISION_HELP = ("auto (bf16 where the CPU/GPU runs it natively, fp16 on GPUs with tensor cores but no bf16, "
                  "else fp32), fp32, bf16 or fp16 (GPU).")  # fmt: skip
JSON_HELP = "Write the results as JSON to this file, or '-' for stdout (human output then goes to stderr)."


OPTIONS = {"quiet": False}  # the global flags, for the commands' progress bars (--quiet: none)


def command_progress(iterable=None, *, disable: bool = False, **kwargs):
    """A progress bar, none under ``--quiet``."""
    return progress_bar(iterable, disable=disable or OPTIONS["quiet"], **kwargs)


class Report:
    """A command's human lines (stdout, or stderr when the JSON goes to stdout; none with --quiet) and its
    machine-readable result (``--json FILE`` or ``--json -``), the same for every command."""

    def __init__(self, json_target: Path | None):
        self.json_target = json_target
        self.to_stdout = json_target is not None and str(json_target) == "-"

    def say(self, message: str) -> None:
        if log.isEnabledFor(logging.INFO):
            typer.echo(message, err=self.to_stdout)

    def result(self, payload: dict) -> None:
        if self.json_target is None:
            return
        text = json.dumps(payload, indent=2, default=str) + "\n"
        if self.to_stdout:
            sys.stdout.write(text)
        else:
            self.json_target.parent.mkdir(parents=True, exist_ok=True)
            self.json_target.write_text(text)


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def require_or_fail(extra: str, feature: str) -> None:
    """Exit 2 with one line naming the extra to install when ``feature``'s optional dependencies are missing."""
    try:
        require_extra(extra, feature)
    except MissingExtraError as exc:
        raise fail(str(exc)) from None


def load_or_fail(model: str, device: str | None, index: int | None = None):
    try:
        dev = resolve_device(device, index=index)
        return load_model(model, device=dev)
    except (WeightsError, RuntimeError, ValueError) as exc:
        raise fail(str(exc)) from None


def exit_on_failures(failures: list[tuple[Path, str]], what: str = "image(s)") -> None:
    """List what failed and why on stderr, then exit 1; do nothing when nothing failed."""
    if not failures:
        return
    typer.secho(f"failed {len(failures)} {what}:", fg=typer.colors.RED, err=True)
    for path, reason in failures:
        typer.secho(f"  {path}: {str(reason).removeprefix(f'{path}: ')}", err=True)
    raise typer.Exit(1)


def input_files(inputs: list[str]) -> list[Path]:
    """Expanded input files; warns about patterns that matched nothing, fails when nothing is left."""
    files, unmatched = expand_inputs(inputs)
    for item in unmatched:
        typer.secho(f"warning: {item}: no such file, or no images in it", fg=typer.colors.YELLOW, err=True)
    if not files:
        raise fail("no input images")
    return files
