"""``sian serve`` and ``sian export``: the web page and API, and ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..inference import DEFAULT_MODEL, PRECISIONS, resolve_device
from ..precision import resolve_precision
from ..weights import WeightsError
from ._common import PRECISION_HELP, fail, require_or_fail


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes it to your network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: Annotated[list[str] | None, typer.Option(help="Offer these models (repeatable); default: all.")] = None,
    default_model: Annotated[str, typer.Option(help="Model used when a request names none.")] = DEFAULT_MODEL,
    max_upload_mb: Annotated[float, typer.Option(help="Refuse larger uploads (413).")] = 25.0,
    max_pixels: Annotated[int, typer.Option(help="Refuse images with more pixels (413).")] = 24_000_000,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    token: Annotated[
        str | None, typer.Option(envvar="SIAN_TOKEN", help="Require 'Authorization: Bearer TOKEN' on the API.")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option(help="Serve a non-loopback address without a token (anyone may use it).")
    ] = False,
    cors_origin: Annotated[list[str] | None, typer.Option(help="A browser origin allowed to call the API.")] = None,
    slots: Annotated[int, typer.Option(help="Derains run at once.")] = 1,
    queue: Annotated[int, typer.Option(help="Uploads that may wait for a slot; beyond: 503 + Retry-After.")] = 4,
    queue_timeout: Annotated[float, typer.Option(help="Seconds an upload may wait for a slot (then 503).")] = 60.0,
) -> None:
    """A local web page (drop a photo, compare before/after, download) and an HTTP API (POST /v1/derain)."""
    require_or_fail("serve", "sian serve")
    from ..serve import ServeConfig, check_exposure, is_loopback, run_server

    if precision not in PRECISIONS:
        raise fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    origins = list(cors_origin or [])
    config = ServeConfig(models=list(model or []), default_model=default_model, precision=precision, token=token,
                         cors_origins=origins, slots=slots, queue=queue, queue_timeout=queue_timeout,
                         max_upload_bytes=int(max_upload_mb * 1024**2), max_pixels=max_pixels)  # fmt: skip
    try:
        check_exposure(host, token, no_auth)
    except ValueError as exc:
        raise fail(str(exc)) from None
    choice = resolve_precision(precision, resolve_device(None))
    typer.echo(f"sian serve on http://{host}:{port}/  (API: POST /v1/derain, GET /v1/health); "
               f"precision {choice.precision} ({choice.reason})")  # fmt: skip
    if token:
        typer.echo(
            f"the API needs 'Authorization: Bearer <token>'; open the page as http://{host}:{port}/#token=<token>"
        )
    elif not is_loopback(host):
        typer.secho(f"warning: no token (--no-auth): anyone who can reach {host}:{port} can use this server",
                    fg=typer.colors.YELLOW, err=True)  # fmt: skip
    if origins:
        typer.echo(f"CORS: browser pages from {', '.join(origins)} may call the API")
    run_server(config, host, port, no_auth=no_auth)


def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file to write.")],
    model: Annotated[str, typer.Option(help="Registered weights name or .safetensors file.")] = DEFAULT_MODEL,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export a model to ONNX (dynamic batch, height and width); run it with 'sian derain --backend onnx'."""
    require_or_fail("onnx", "sian export")
    from ..export import export_onnx

    if output.suffix.lower() != ".onnx":
        raise fail(f"--output must end in .onnx, got {output}")
    try:
        path = export_onnx(model, output, overwrite=overwrite)
    except FileExistsError as exc:
        raise fail(f"{exc}; pass --overwrite") from None
    except WeightsError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"exported {model} to {path} ({path.stat().st_size / 1e6:.1f} MB)")
