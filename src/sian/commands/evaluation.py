"""``sian eval`` and ``sian bench``: scores and timings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from ..data import LAYOUTS, DatasetLayoutError, find_pairs
from ..evaluate import evaluate_pairs, parse_tta, summarize
from ..inference import PRECISIONS, TTA_FLIPS, resolve_device
from ..io import ImageReadError
from ..metrics import QUANTIZE_MODES
from ..weights import WeightsError
from ._common import JSON_HELP, Report, command_progress, fail, load_or_fail, require_or_fail


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
    report = Report(json_out)
    if quantization not in QUANTIZE_MODES:
        raise fail(f"--quantize must be round or floor, got {quantization!r}")
    if precision not in PRECISIONS:
        raise fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        modes = parse_tta(tta)
        pairset = find_pairs(data, layout)
    except (ValueError, DatasetLayoutError) as exc:
        raise fail(str(exc)) from None
    if threads:
        torch.set_num_threads(threads)
    for problem in pairset.problems():
        typer.secho(f"warning: {problem}", fg=typer.colors.YELLOW, err=True)
    pairs = pairset.pairs[:limit] if limit else pairset.pairs
    net = load_or_fail(model, device)
    report.say(f"evaluating {model} on {len(pairs)} pairs of {data} (layout {pairset.layout}, quantize {quantization})")
    bar = command_progress(total=len(pairs), desc="eval", unit="img")
    largest = max(modes, key=lambda mode: len(TTA_FLIPS[mode]) if mode else 1) or "none"
    seen: list = []

    def progress(mode: str, row) -> None:
        if mode == largest:  # once per image
            seen.append(row)
            mean = summarize(seen)
            # refresh=False: the bar redraws on its own schedule (at most once a minute into a log file).
            bar.set_postfix_str(f"{row.name} {mode} {row.psnr:.2f} dB | mean {mean.psnr:.3f} / {mean.ssim:.4f}",
                                refresh=False)  # fmt: skip
            bar.update()

    try:
        result = evaluate_pairs(net, pairs, quantization, modes, on_row=progress, tile=tile, overlap=tile_overlap,
                                precision=precision)  # fmt: skip
    except (ImageReadError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        bar.close()
    if csv is not None:
        for path in result.write_csvs(csv):
            report.say(f"per-image results: {path}")
    report.say("\n".join(result.table()))
    report.result({"model": model, "data": str(data), "layout": pairset.layout, "quantize": quantization,
                   "precision": precision, **result.to_dict()})  # fmt: skip


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
    from ..benchmark import (
        check_precisions,
        default_path,
        default_path_markdown,
        parse_size,
        rows_to_dict,
        run_benchmark,
        to_markdown,
    )

    report = Report(json_out)

    train_precisions = tuple(train_precision or ("fp32", "bf16"))
    if train_precisions == ("none",):  # inference rows only: the training rows take most of a run's time
        train_precisions = ()
    infer_precisions = tuple(precision or ("fp32",))
    if train_precisions:
        require_or_fail("train", "timing a training step (sian bench; --train-precision none skips it)")
    try:
        sizes = [parse_size(item) for item in size or ["481x321", "1280x720"]]
        where = resolve_device(device)
        check_precisions(where, train_precisions, infer_precisions)
    except (ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from None
    path = None
    if images or authors_code is not None:
        if authors_code is not None and authors_weights is None:
            from ..data import shared_folder

            authors_weights = shared_folder() / "weights" / "sian_authors" / "rain100l.pth"
        try:
            path = default_path(*sizes[0], images=images, authors_code=authors_code, authors_weights=authors_weights)
        except (FileNotFoundError, WeightsError, RuntimeError, ValueError) as exc:
            raise fail(str(exc)) from None
    rows, machine = run_benchmark(sizes, train_batch, train_patch, repeats, train_precisions=train_precisions,
                                  infer_precisions=infer_precisions, device=where)  # fmt: skip
    table = (default_path_markdown(path) + "\n" if path else "") + to_markdown(rows, machine)
    report.say(table)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table)
    report.result({**rows_to_dict(rows, machine), **({"default_path": path} if path else {})})
