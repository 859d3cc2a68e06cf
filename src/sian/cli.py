"""The ``sian`` command: derain, eval, weights, models."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import torch
import typer
from typer.core import TyperGroup

from ._allocator import keep_freed_memory
from ._atomic import atomic_path
from ._progress import BarSafeHandler, progress_bar
from .batch import derain_batch
from .convert import download_weights, import_weights
from .data import LAYOUTS, DatasetLayoutError, find_pairs
from .evaluate import evaluate, evaluate_self_ensembles, summarize, write_csv
from .extras import MissingExtraError, require_extra
from .hub import WEIGHTS, load_model, weights_dir
from .inference import (
    DEFAULT_MODEL,
    PRECISIONS,
    TTA_FLIPS,
    resolve_device,
)
from .io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    expand_inputs,
    is_video,
    read_image,
    to_tensor,
    write_image,
)
from .metrics import QUANTIZE_MODES, quantize
from .models import get_variant, list_models
from .precision import resolve_precision
from .weights import WeightsError, read_weights_file

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

OUTPUT_FORMATS = ("png", "jpg", "bmp", "tif", "webp")


log = logging.getLogger("sian")
PRECISION_HELP = ("auto (bf16 where the CPU/GPU runs it natively, fp16 on GPUs with tensor cores but no bf16, "
                  "else fp32), fp32, bf16 or fp16 (GPU).")  # fmt: skip
JSON_HELP = "Write the results as JSON to this file, or '-' for stdout (human output then goes to stderr)."


_OPTIONS = {"quiet": False}  # the global flags, for the commands' progress bars (--quiet: none)


def _progress(iterable=None, *, disable: bool = False, **kwargs):
    """A progress bar, none under ``--quiet``."""
    return progress_bar(iterable, disable=disable or _OPTIONS["quiet"], **kwargs)


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
    _OPTIONS["quiet"] = quiet


class _Report:
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


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _require(extra: str, feature: str) -> None:
    """Exit 2 with one line naming the extra to install when ``feature``'s optional dependencies are missing."""
    try:
        require_extra(extra, feature)
    except MissingExtraError as exc:
        raise _fail(str(exc)) from None


def _load(model: str, device: str | None, index: int | None = None):
    try:
        dev = resolve_device(device, index=index)
        return load_model(model, device=dev)
    except (WeightsError, RuntimeError, ValueError) as exc:
        raise _fail(str(exc)) from None


def _exit_on_failures(failures: list[tuple[Path, str]], what: str = "image(s)") -> None:
    """List what failed and why on stderr, then exit 1; do nothing when nothing failed."""
    if not failures:
        return
    typer.secho(f"failed {len(failures)} {what}:", fg=typer.colors.RED, err=True)
    for path, reason in failures:
        typer.secho(f"  {path}: {str(reason).removeprefix(f'{path}: ')}", err=True)
    raise typer.Exit(1)


def _input_files(inputs: list[str]) -> list[Path]:
    """Expanded input files; warns about patterns that matched nothing, fails when nothing is left."""
    files, unmatched = expand_inputs(inputs)
    for item in unmatched:
        typer.secho(f"warning: {item}: no such file, or no images in it", fg=typer.colors.YELLOW, err=True)
    if not files:
        raise _fail("no input images")
    return files


@app.command("derain")
def derain_command(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the derained images.")],
    model: Annotated[str, typer.Option(help="Registered weights name or .safetensors file.")] = DEFAULT_MODEL,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"Output format: {', '.join(OUTPUT_FORMATS)}.")] = "png",
    suffix: Annotated[str, typer.Option(help="Appended to each output file's stem.")] = "",
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (never inputs).")] = False,
    quantization: Annotated[str, typer.Option("--quantize", help="round or floor to 8 bits.")] = "round",
    tile: Annotated[int | None, typer.Option(help="Derain in tiles of this size (default: only when needed).")] = None,
    tile_overlap: Annotated[int, typer.Option(help="Pixels shared (cross-faded) by neighbouring tiles.")] = 64,
    max_memory_gb: Annotated[float, typer.Option(help="Tile automatically above this inference memory.")] = 2.0,
    max_pixels: Annotated[
        int, typer.Option(help="Refuse larger images (decompression-bomb guard); 0: no limit.")
    ] = DEFAULT_MAX_PIXELS,
    backend: Annotated[str, typer.Option(help="torch, or onnx to run an exported --model FILE.onnx.")] = "torch",
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    tta: Annotated[
        str | None, typer.Option(help="Self-ensemble: flip2 (image + mirror) or flip4 (+ vertical, both); slower.")
    ] = None,
    video_crf: Annotated[
        int, typer.Option(help="H.264 quality of derained videos: 17 visually lossless, 0 lossless.")
    ] = 17,
    json_out: Annotated[Path | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """Derain images (and videos) into OUTPUT; existing files are skipped unless --overwrite.

    Grayscale, palette, RGBA (alpha kept), CMYK, 16-bit PNG/TIFF (kept 16-bit) and EXIF-rotated photos
    are handled; a file that cannot be read is reported and the batch goes on; exit status 1 if any failed.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise _fail(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    if quantization not in QUANTIZE_MODES:
        raise _fail(f"--quantize must be round or floor, got {quantization!r}")
    if precision not in PRECISIONS:
        raise _fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend not in ("torch", "onnx"):
        raise _fail(f"--backend must be torch or onnx, got {backend!r}")
    files = _input_files(inputs)
    if any(is_video(path) for path in files):
        _require("video", "deraining a video")
    if backend == "onnx":
        _require("onnx", "sian derain --backend onnx")
    try:
        batch = derain_batch(
            files, output, model=model, device=device, backend=backend, precision=precision, tile=tile,
            overlap=tile_overlap, memory_budget=int(max_memory_gb * 1024**3), quantization=quantization, tta=tta,
            suffix=suffix, fmt=fmt, overwrite=overwrite, max_pixels=max_pixels or None, video_crf=video_crf,
            progress=not _OPTIONS["quiet"],
        )  # fmt: skip
    except (WeightsError, RuntimeError, ValueError) as exc:
        raise _fail(str(exc)) from None
    failures = [(Path(f["input"]), f["error"]) for f in batch.failed]
    if not batch.is_main:  # rank 0 reports for all; every rank exits with the job's status
        raise typer.Exit(1 if failures else 0)
    report = _Report(json_out)
    report.say(f"derained {len(batch.written)} image(s) into {output} in {batch.seconds:.1f} s with {model} "
               f"({batch.pipeline})")  # fmt: skip
    if batch.processes > 1:
        report.say("per process: " + ", ".join(f"rank {r['rank']}: {len(r['written'])} written, "
                                                 f"{len(r['skipped'])} skipped, {len(r['failed'])} failed"
                                                 for r in batch.ranks))  # fmt: skip
    for item in batch.written:
        for note in item["notes"]:
            typer.secho(f"note: {Path(item['input']).name}: {note}", fg=typer.colors.YELLOW, err=True)
    if batch.skipped:
        names = ", ".join(Path(p).name for p in batch.skipped[:10]) + (" ..." if len(batch.skipped) > 10 else "")
        report.say(f"skipped {len(batch.skipped)} existing output(s) (pass --overwrite to replace): {names}")
    report.result({**batch.to_dict(), "model": model})
    _exit_on_failures(failures)


@app.command("demo")
def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the derained example.")] = Path(
        "sian-demo"
    ),
    model: Annotated[str, typer.Option(help="Registered weights name or .safetensors file.")] = DEFAULT_MODEL,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing result.")] = False,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 where the CPU multiplies it natively, else fp32), fp32 or bf16.")
    ] = "auto",
) -> None:
    """Derain the bundled example (Kodak's kodim16 with our synthetic rain), offline, and print its PSNR."""
    from .demo import run_demo

    try:
        result = run_demo(output, model=model, overwrite=overwrite, precision=precision)
    except FileExistsError as exc:
        raise _fail(f"{exc}; pass --overwrite or choose another --output") from None
    except (WeightsError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"derained the bundled example with {model} in {result.seconds:.1f} s ({result.ran}): {result.output}")
    typer.echo(f"{'':8}{'PSNR (Y)':>10}{'SSIM (Y)':>10}   vs the clean reference")
    typer.echo(f"{'input':8}{result.input_psnr:10.2f}{result.input_ssim:10.4f}")
    typer.echo(f"{'output':8}{result.psnr:10.2f}{result.ssim:10.4f}")


@app.command("explain")
def explain_command(
    image: Annotated[Path, typer.Argument(help="A rainy photo.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the figure and the HTML page.")],
    gt: Annotated[Path | None, typer.Option(help="Its clean reference: adds per-stage PSNR/SSIM.")] = None,
    model: Annotated[str, typer.Option(help="Registered weights name or .safetensors file.")] = DEFAULT_MODEL,
    max_side: Annotated[int, typer.Option(help="Downscale larger images to this longest side first.")] = 1024,
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
) -> None:
    """One PNG figure and one self-contained HTML page: input, every stage, rain layer, attention, DoG pyramid."""
    _require("explain", "sian explain")
    from .explain import explain, render_figure, render_html, shrink_to

    targets = [output / f"{image.stem}_explain.png", output / f"{image.stem}_explain.html"]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise _fail(f"{existing[0]} exists; pass --overwrite or choose another --output")
    try:
        rainy = read_image(image)
        clean = read_image(gt) if gt is not None else None
    except (ImageReadError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    if clean is not None and clean.shape != rainy.shape:
        raise _fail(f"--gt is {clean.shape[1]}x{clean.shape[0]} but the image is {rainy.shape[1]}x{rainy.shape[0]}")
    rainy, clean, scaled = shrink_to(rainy, clean, max_side)
    if scaled:
        typer.echo(f"downscaled to {rainy.shape[1]}x{rainy.shape[0]} for the explanation (--max-side {max_side})")
    net = _load(model, "cpu")
    result = explain(net, rainy, clean)
    render_figure(result, targets[0])
    render_html(result, targets[1], title=f"sian explain: {image.name} with {model}")
    typer.echo(f"{len(result.panels)} panels: {targets[0]} and {targets[1]}")
    for index, (psnr, ssim) in enumerate(result.stage_scores, 1):
        typer.echo(f"stage {index}: Y-PSNR {psnr:.2f} dB, SSIM {ssim:.4f}")


@app.command("serve")
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
    _require("serve", "sian serve")
    import uvicorn

    from .serve import ServeConfig, create_app, is_loopback

    if precision not in PRECISIONS:
        raise _fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    origins = list(cors_origin or [])
    if not is_loopback(host) and not token and not no_auth:
        raise _fail(f"--host {host} exposes the server beyond this machine: give a --token (or SIAN_TOKEN), "
                    "or pass --no-auth to let anyone who can reach it use it")  # fmt: skip
    config = ServeConfig(models=list(model or []), default_model=default_model, precision=precision, token=token,
                         cors_origins=origins, slots=slots, queue=queue, queue_timeout=queue_timeout,
                         max_upload_bytes=int(max_upload_mb * 1024**2), max_pixels=max_pixels)  # fmt: skip
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
    logging.getLogger("sian.serve.access").setLevel(logging.INFO)
    server = uvicorn.Server(uvicorn.Config(create_app(config), host=host, port=port, log_level="warning"))
    server.capture_signals = lambda: _graceful_exit(server)  # exit 0 after a clean shutdown
    server.run()


@contextlib.contextmanager
def _graceful_exit(server):
    """SIGTERM/SIGINT stop the server the way uvicorn does (requests in progress finish, new connections are
    refused), but the process then exits 0: uvicorn's own handling re-raises the signal, killing it with it."""
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command("export")
def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file to write.")],
    model: Annotated[str, typer.Option(help="Registered weights name or .safetensors file.")] = DEFAULT_MODEL,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export a model to ONNX (dynamic batch, height and width); run it with 'sian derain --backend onnx'."""
    _require("onnx", "sian export")
    from .export import export_onnx

    if output.suffix.lower() != ".onnx":
        raise _fail(f"--output must end in .onnx, got {output}")
    try:
        path = export_onnx(model, output, overwrite=overwrite)
    except FileExistsError as exc:
        raise _fail(f"{exc}; pass --overwrite") from None
    except WeightsError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"exported {model} to {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command("eval")
def eval_command(
    model: Annotated[str, typer.Option(help="Registered weights name or .safetensors file.")],
    data: Annotated[Path, typer.Option(help="Dataset folder (or a pair-list file for --layout list).")],
    layout: Annotated[str, typer.Option(help=f"One of {', '.join(LAYOUTS)}.")] = "auto",
    quantization: Annotated[str, typer.Option("--quantize", help="round (SIAN release) or floor (PReNet).")] = "round",
    csv: Annotated[Path | None, typer.Option(help="Write per-image results to this CSV file.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N pairs (natural order).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for PyTorch.")] = None,
    tile: Annotated[int | None, typer.Option(help="Evaluate in tiles of this size (default: whole images).")] = None,
    tile_overlap: Annotated[int, typer.Option(help="Pixels shared by neighbouring tiles.")] = 64,
    precision: Annotated[str, typer.Option(help="fp32, bf16, fp16 (GPU) or auto: autocast (sian.precision).")] = "fp32",
    tta: Annotated[
        str | None,
        typer.Option(
            help="Self-ensemble: flip2 (image + mirror) or flip4 (+ vertical, both); slower. A list such "
            "as none,flip2,flip4 scores each from the passes of the largest (whole images)."
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """Mean Y-channel PSNR/SSIM of a model over a paired dataset, with the rainy-input baseline."""
    report = _Report(json_out)
    if quantization not in QUANTIZE_MODES:
        raise _fail(f"--quantize must be round or floor, got {quantization!r}")
    if precision not in PRECISIONS:
        raise _fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    modes = [m.strip() for m in tta.split(",")] if tta and "," in tta else None
    tta = None if tta == "none" else tta
    if modes is not None:
        unknown = [m for m in modes if m != "none" and m not in TTA_FLIPS]
        if unknown or len(set(modes)) != len(modes):
            raise _fail(f"--tta list: each of none, {', '.join(TTA_FLIPS)} at most once, got {tta!r}")
        if tile is not None:
            raise _fail("--tta with a list scores whole images; give one --tta to combine it with --tile")
    if threads:
        torch.set_num_threads(threads)
    try:
        pairset = find_pairs(data, layout)
    except DatasetLayoutError as exc:
        raise _fail(str(exc)) from None
    for problem in pairset.problems():
        typer.secho(f"warning: {problem}", fg=typer.colors.YELLOW, err=True)
    pairs = pairset.pairs[:limit] if limit else pairset.pairs
    net = _load(model, device)
    report.say(f"evaluating {model} on {len(pairs)} pairs of {data} (layout {pairset.layout}, quantize {quantization})")
    if modes is not None:
        return _eval_self_ensembles(net, pairs, modes, quantization, precision, csv, report,
                                    {"model": model, "data": str(data), "layout": pairset.layout})  # fmt: skip
    bar = _progress(total=len(pairs), desc="eval", unit="img")
    rows = []

    def progress(row) -> None:
        rows.append(row)
        mean = summarize(rows)
        # refresh=False: the bar redraws on its own schedule (at most once a minute into a log file).
        bar.set_postfix_str(f"{row.name} {row.psnr:.2f} dB | mean {mean.psnr:.3f} / {mean.ssim:.4f}", refresh=False)
        bar.update()

    try:
        evaluate(net, pairs, quantization, on_row=progress, tile=tile, overlap=tile_overlap, precision=precision,
                 tta=tta)  # fmt: skip
    except (ImageReadError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        bar.close()
    summary = summarize(rows)
    if csv is not None:
        write_csv(csv, rows)
        report.say(f"per-image results: {csv}")
    report.say(f"{'':8}{'PSNR (Y)':>10}{'SSIM (Y)':>10}")
    report.say(f"{'input':8}{summary.input_psnr:10.4f}{summary.input_ssim:10.4f}")
    report.say(f"{'output':8}{summary.psnr:10.4f}{summary.ssim:10.4f}")
    device_name = str(next(net.parameters()).device)
    report.say(f"{summary.images} images, {summary.seconds_per_image:.2f} s per image on {device_name}")
    report.result({"model": model, "data": str(data), "layout": pairset.layout, "quantize": quantization,
                   "precision": precision, "tta": tta, "device": device_name, "summary": asdict(summary),
                   "images": [asdict(r) for r in rows]})  # fmt: skip


def _eval_self_ensembles(net, pairs, modes, quantization, precision, csv, report, about) -> None:
    """``sian eval --tta none,flip2,flip4``: one summary (and CSV) per self-ensemble, from shared passes."""
    keys = {mode: None if mode == "none" else mode for mode in modes}
    bar = _progress(total=len(pairs), desc="eval", unit="img")
    largest = max(keys.values(), key=lambda m: len(TTA_FLIPS[m]) if m else 1)

    def progress(mode, row) -> None:
        if mode == largest:
            bar.set_postfix_str(f"{row.name} {mode or 'none'} {row.psnr:.2f} dB", refresh=False)
            bar.update()

    try:
        rows = evaluate_self_ensembles(net, pairs, list(keys.values()), quantization, on_row=progress,
                                       precision=precision)  # fmt: skip
    except (ImageReadError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        bar.close()
    summaries = {mode: summarize(rows[key]) for mode, key in keys.items()}
    device_name = str(next(net.parameters()).device)
    first = next(iter(summaries.values()))
    report.say(f"{'':8}{'PSNR (Y)':>10}{'SSIM (Y)':>10}{'s / image':>11}")
    report.say(f"{'input':8}{first.input_psnr:10.4f}{first.input_ssim:10.4f}")
    for mode, summary in summaries.items():
        report.say(f"{mode:8}{summary.psnr:10.4f}{summary.ssim:10.4f}{summary.seconds_per_image:11.2f}")
    report.say(f"{first.images} images on {device_name}; each mode timed by the passes it needs")
    if csv is not None:
        for mode, key in keys.items():
            path = write_csv(csv.with_name(f"{csv.stem}-{mode}{csv.suffix}"), rows[key])
            report.say(f"per-image results ({mode}): {path}")
    report.result({**about, "quantize": quantization, "precision": precision, "tta": modes, "device": device_name,
                   "summaries": {mode: asdict(s) for mode, s in summaries.items()},
                   "images": {mode: [asdict(r) for r in rows[key]] for mode, key in keys.items()}})  # fmt: skip


@weights_app.command("list")
def weights_list() -> None:
    """Show the registered weights and whether each is installed."""
    folder = weights_dir()
    typer.echo(f"weights folder: {folder}  (set SIAN_HOME to move it)")
    others = sorted(p for p in folder.glob("*.safetensors") if p.stem not in WEIGHTS) if folder.is_dir() else []
    width = max(len(name) for name in ["name", *WEIGHTS, *(p.stem for p in others)]) + 2  # names never run on
    typer.echo(f"{'name':{width}}{'model':8}{'installed':11}{'result':15}dataset")
    for entry in WEIGHTS.values():
        present = "bundled" if entry.bundled else "yes" if (folder / entry.filename).is_file() else "no"
        arch = get_variant(entry.variant).arch
        typer.echo(f"{entry.name:{width}}{arch:8}{present:11}{entry.reference:15}{entry.dataset}")
    for path in others:
        try:
            arch = read_weights_file(path)[0]
        except (WeightsError, OSError, ValueError) as exc:  # one bad file must not hide the others
            typer.secho(f"{path.stem:{width}}{'?':8}{'unreadable':11}{'-':15}{exc}", fg=typer.colors.YELLOW)
            continue
        typer.echo(f"{path.stem:{width}}{arch:8}{'yes':11}{'-':15}(imported by you)")


@weights_app.command("import")
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
        raise _fail(str(exc)) from None
    typer.echo(f"imported {file} as {name!r}: {path}")


@weights_app.command("download")
def weights_download(name: Annotated[str, typer.Argument(help="A registered weights name.")]) -> None:
    """Download a registered authors' file (needs network), check its hash and import it."""
    try:
        path = download_weights(name)
    except WeightsError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"downloaded and imported {name!r}: {path}")


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_command(
    config: Annotated[Path, typer.Argument(help="YAML config (see configs/).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. train.steps=100.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint in train.out_dir.")] = False,
    summary: Annotated[
        bool, typer.Option(help="Print the run's validation curve and its stopping rule's verdict; train nothing.")
    ] = False,
    allow_change: Annotated[
        list[str] | None, typer.Option(help="With --resume: a config key that may differ from the saved run's.")
    ] = None,
) -> None:
    """Train SIAN or PReNet; the same command under torchrun runs DistributedDataParallel."""
    _require("train", "sian train")
    from .training import load_config, train
    from .training.stopping import VERDICT_FILE, summarize_run
    from .training.trainer import CheckpointError, ConfigChangedError, NonFiniteLossError

    try:
        cfg = load_config(config, overrides or [])
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise _fail(f"bad config: {exc}") from None
    except Exception as exc:  # OmegaConf's validation errors name the offending key
        raise _fail(f"bad config: {exc}") from None
    if summary:
        log_file = Path(cfg.train.out_dir) / "log.jsonl"
        if not log_file.is_file():
            raise _fail(f"no training log at {log_file}: the run has not started")
        typer.echo("\n".join(summarize_run(log_file, cfg.train.stop)))
        return
    try:
        summary = train(cfg, resume=resume, progress=not _OPTIONS["quiet"], allow_changes=tuple(allow_change or ()))
    except (FileExistsError, FileNotFoundError, ConfigChangedError, ValueError) as exc:  # unusable data or init
        raise _fail(str(exc)) from None
    except (NonFiniteLossError, CheckpointError) as exc:
        raise _fail(str(exc), code=1) from None
    typer.echo(f"{summary['status']} at step {summary['step']}/{summary['total_steps']}; "
               f"best validation PSNR {summary['best_val_psnr']:.3f} dB; output in {cfg.train.out_dir}")  # fmt: skip
    if summary.get("stop_reason"):  # train.stop ended it: say why (rank 0 knows)
        typer.echo(f"{summary['stop_reason']}; the verdict is in {Path(cfg.train.out_dir) / VERDICT_FILE}")
    if summary["status"] == "interrupted":
        typer.echo(f"resume with: sian train {config} {' '.join(overrides or [])} --resume".rstrip())
        raise typer.Exit(128 + (summary["signal"] or 2))


@app.command("synth")
def synth_command(
    inputs: Annotated[list[str], typer.Argument(help="Clean image files, folders or glob patterns.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset folder to write (generic layout).")],
    preset: Annotated[
        str,
        typer.Option(
            help="light (one streak family), heavy (layers + haze), classic (the Photoshop recipe), streaks, "
            "streaks-light, streaks-heavy (real streak layers from $SIAN_STREAK_BANK), raintrainh (real Rain100H rain "
            "layers from $SIAN_RAINTRAINH), or a mixture drawn per image such as streaks+light+classic."
        ),
    ] = "light",
    seed: Annotated[int, typer.Option(help="Base seed; image i uses seed + i.")] = 0,
    variants: Annotated[int, typer.Option(help="Rainy versions per clean image.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
) -> None:
    """Render synthetic rain onto clean images: OUTPUT/rainy/NAME.png and OUTPUT/gt/NAME.png."""
    import json

    from .synth import PRESETS, is_preset, synthesize

    if not is_preset(preset):
        raise _fail(f"--preset must be one of {', '.join(PRESETS)} or a mixture like light+classic, got {preset!r}")
    files = _input_files(inputs)
    failures, records, index = [], [], 0
    for path in _progress(files, desc="synth", unit="img"):
        try:
            clean = read_image(path)
        except ImageReadError as exc:
            failures.append((path, str(exc)))
            continue
        for version in range(variants):
            name = path.stem if variants == 1 else f"{path.stem}_{version + 1}"
            targets = (output / "rainy" / f"{name}.png", output / "gt" / f"{name}.png")
            existing = [str(t) for t in targets if t.exists()]
            if existing and not overwrite:
                # Checked for both files first, so a pair is written whole or not at all.
                failures.append((path, f"{', '.join(existing)} exists (pass --overwrite to replace)"))
                index += 1
                continue
            try:
                rainy, params = synthesize(to_tensor(clean)[0], preset, seed + index)
            except FileNotFoundError as exc:  # a rain source's data (streak bank, RainTrainH pairs) is absent
                raise _fail(str(exc)) from None
            write_image(targets[0], quantize(rainy), overwrite=True)
            write_image(targets[1], clean, overwrite=True)
            records.append({"name": name, "source": str(path), "seed": seed + index, "preset": preset,
                            "params": params.to_dict()})  # fmt: skip
            index += 1
    output.mkdir(parents=True, exist_ok=True)
    # One record per pair: a pair written again (--overwrite) replaces its old record instead of adding one.
    params_file = output / "rain_params.jsonl"
    rewritten = {record["name"] for record in records}
    kept = [line for line in (params_file.read_text().splitlines() if params_file.is_file() else [])
            if line.strip() and json.loads(line).get("name") not in rewritten]  # fmt: skip
    with atomic_path(params_file) as tmp:
        tmp.write_text("".join(line + "\n" for line in [*kept, *(json.dumps(r) for r in records)]))
    typer.echo(
        f"wrote {len(records)} rainy/clean pair(s) to {output} (preset {preset}); parameters in rain_params.jsonl"
    )
    _exit_on_failures(failures)


@app.command("bench")
def bench_command(
    size: Annotated[list[str] | None, typer.Option(help="Inference size WxH (repeatable).")] = None,
    train_batch: Annotated[int, typer.Option(help="Training batch for the throughput row.")] = 4,
    train_patch: Annotated[int, typer.Option(help="Training patch size.")] = 120,
    repeats: Annotated[int, typer.Option(help="Timed repetitions (median reported).")] = 5,
    train_precision: Annotated[
        list[str] | None,
        typer.Option(
            help="Training rows in these precisions (repeatable; default fp32 and bf16; fp16 on a GPU; none: no "
            "training)."
        ),
    ] = None,
    precision: Annotated[
        list[str] | None,
        typer.Option(
            help="Inference rows in these precisions (repeatable; default fp32): fp32, bf16, fp16 (GPU), or "
            "auto, what 'sian derain' picks on this machine."
        ),
    ] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the table to this Markdown file.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help=JSON_HELP)] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    images: Annotated[
        int, typer.Option(help="Default path: throughput over this many images at the first --size (0: skip).")
    ] = 20,
    authors_code: Annotated[
        Path | None, typer.Option(help="A folder with the authors' rpdnet.py: time their code on the same images.")
    ] = None,
    authors_weights: Annotated[
        Path | None, typer.Option(help="Their checkpoint (default: $SIAN_SHARED/weights/sian_authors/rain100l.pth).")
    ] = None,
) -> None:
    """Time the default path (one-shot and throughput, beside the authors' code when given), then SIAN against
    PReNet (inference at each size, training throughput), in one run."""
    from .benchmark import default_path, default_path_markdown, rows_to_dict, run_benchmark, to_markdown

    report = _Report(json_out)

    sizes = []
    for item in size or ["481x321", "1280x720"]:
        try:
            w, h = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise _fail(f"--size must look like 481x321, got {item!r}") from None
        sizes.append((w, h))
    train_precisions = tuple(train_precision or ("fp32", "bf16"))
    if train_precisions == ("none",):  # inference rows only: the training rows take most of a run's time
        train_precisions = ()
    infer_precisions = tuple(precision or ("fp32",))
    if train_precisions:
        _require("train", "timing a training step (sian bench; --train-precision none skips it)")
    try:
        where = resolve_device(device)
    except RuntimeError as error:
        raise _fail(str(error)) from None
    # fp16 only on a GPU: a CPU runs fp16 autocast emulated, which would time the emulation.
    reduced = ("bf16", "fp16") if where.type == "cuda" else ("bf16",)
    for option, values, allowed in (("--train-precision", train_precisions, ("fp32", *reduced)),
                                    ("--precision", infer_precisions, ("fp32", *reduced, "auto"))):  # fmt: skip
        bad = [p for p in values if p not in allowed]
        if bad:
            on = f" on {where.type}" + (" (fp16 needs --device cuda)" if bad[0] == "fp16" else "")
            raise _fail(f"{option} takes {' or '.join(allowed)}{on}, got {bad[0]!r}")
    path = None
    if images or authors_code is not None:
        if authors_code is not None and authors_weights is None:
            from .data import shared_folder

            authors_weights = shared_folder() / "weights" / "sian_authors" / "rain100l.pth"
        try:
            path = default_path(*sizes[0], images=images, authors_code=authors_code, authors_weights=authors_weights)
        except (FileNotFoundError, WeightsError, RuntimeError, ValueError) as exc:
            raise _fail(str(exc)) from None
    rows, machine = run_benchmark(sizes, train_batch, train_patch, repeats, train_precisions=train_precisions,
                                  infer_precisions=infer_precisions, device=where)  # fmt: skip
    table = (default_path_markdown(path) + "\n" if path else "") + to_markdown(rows, machine)
    report.say(table)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table)
    report.result({**rows_to_dict(rows, machine), **({"default_path": path} if path else {})})


@app.command("models")
def models_command() -> None:
    """List the registered model variants."""
    for name in list_models():
        typer.echo(f"{name:20}{get_variant(name).description}")
