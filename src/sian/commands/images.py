"""``sian derain``, ``sian demo`` and ``sian explain``: deraining files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..batch import derain_batch
from ..inference import DEFAULT_MODEL, PRECISIONS
from ..io import DEFAULT_MAX_PIXELS, ImageReadError, is_video
from ..metrics import QUANTIZE_MODES
from ..weights import WeightsError
from ._common import (
    JSON_HELP,
    OPTIONS,
    OUTPUT_FORMATS,
    PRECISION_HELP,
    Report,
    exit_on_failures,
    fail,
    input_files,
    load_or_fail,
    require_or_fail,
)


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
        raise fail(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    if quantization not in QUANTIZE_MODES:
        raise fail(f"--quantize must be round or floor, got {quantization!r}")
    if precision not in PRECISIONS:
        raise fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend not in ("torch", "onnx"):
        raise fail(f"--backend must be torch or onnx, got {backend!r}")
    files = input_files(inputs)
    if any(is_video(path) for path in files):
        require_or_fail("video", "deraining a video")
    if backend == "onnx":
        require_or_fail("onnx", "sian derain --backend onnx")
    try:
        batch = derain_batch(
            files, output, model=model, device=device, backend=backend, precision=precision, tile=tile,
            overlap=tile_overlap, memory_budget=int(max_memory_gb * 1024**3), quantization=quantization, tta=tta,
            suffix=suffix, fmt=fmt, overwrite=overwrite, max_pixels=max_pixels or None, video_crf=video_crf,
            progress=not OPTIONS["quiet"],
        )  # fmt: skip
    except (WeightsError, RuntimeError, ValueError) as exc:
        raise fail(str(exc)) from None
    failures = [(Path(f["input"]), f["error"]) for f in batch.failed]
    if not batch.is_main:  # rank 0 reports for all; every rank exits with the job's status
        raise typer.Exit(1 if failures else 0)
    report = Report(json_out)
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
    exit_on_failures(failures)


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
    from ..demo import run_demo

    try:
        result = run_demo(output, model=model, overwrite=overwrite, precision=precision)
    except FileExistsError as exc:
        raise fail(f"{exc}; pass --overwrite or choose another --output") from None
    except (WeightsError, OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"derained the bundled example with {model} in {result.seconds:.1f} s ({result.ran}): {result.output}")
    typer.echo(f"{'':8}{'PSNR (Y)':>10}{'SSIM (Y)':>10}   vs the clean reference")
    typer.echo(f"{'input':8}{result.input_psnr:10.2f}{result.input_ssim:10.4f}")
    typer.echo(f"{'output':8}{result.psnr:10.2f}{result.ssim:10.4f}")


def explain_command(
    image: Annotated[Path, typer.Argument(help="A rainy photo.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the figure and the HTML page.")],
    gt: Annotated[Path | None, typer.Option(help="Its clean reference: adds per-stage PSNR/SSIM.")] = None,
    model: Annotated[str, typer.Option(help="Registered weights name or .safetensors file.")] = DEFAULT_MODEL,
    max_side: Annotated[int, typer.Option(help="Downscale larger images to this longest side first.")] = 1024,
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
) -> None:
    """One PNG figure and one self-contained HTML page: input, every stage, rain layer, attention, DoG pyramid."""
    require_or_fail("explain", "sian explain")
    from ..explain import explain_file

    net = load_or_fail(model, "cpu")
    try:
        done = explain_file(
            net, image, output, gt, max_side, overwrite, title=f"sian explain: {image.name} with {model}"
        )
    except FileExistsError as exc:
        raise fail(f"{exc}; pass --overwrite or choose another --output") from None
    except (ImageReadError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if done.scaled_to:
        typer.echo(f"downscaled to {done.scaled_to[0]}x{done.scaled_to[1]} for the explanation (--max-side {max_side})")
    typer.echo(f"{len(done.explanation.panels)} panels: {done.figure} and {done.page}")
    for index, (psnr, ssim) in enumerate(done.explanation.stage_scores, 1):
        typer.echo(f"stage {index}: Y-PSNR {psnr:.2f} dB, SSIM {ssim:.4f}")
