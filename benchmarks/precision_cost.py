"""The PSNR cost of reduced precision: Rain100L test through one model in fp32 and in bf16/fp16.

    python benchmarks/precision_cost.py [--model sian-rain100l] [--precision bf16] [--limit N] [--device cpu]

Every image is derained in fp32 and then in the reduced precision, in turns (so that the time ratio is
measured on the same image under the same load), and its row, with the machine it ran on, is appended to
``docs/results/precision/<model>-<precision>[-<device>].csv`` at once: the run is resumable, and a later
call continues with the images not yet in that model's CSV. The summary (mean Y-PSNR/SSIM of both, the
cost, the largest per-image PSNR change over the images done so far; the time ratio per machine, since a
resumed run may have moved) is printed and written next to it as ``.txt``. Imports the authors' Rain100L
SIAN from $SIAN_SHARED/weights when --model is sian-rain100l and it is not installed.

On CPUs without native bf16 (no AVX512-BF16 or AMX; AVX2 only) oneDNN runs bf16 convolutions on a
reference path about ten times slower than fp32: the cost in PSNR is still measured exactly, the time
ratio only says that this hardware gains nothing.

``--precision fp16 --device cpu`` measures what fp16 autocast (``auto``'s choice on GPUs with fp16 tensor
cores but no bf16) costs in PSNR without such a GPU: the same autocast on the CPU, emulated (about 20x
slower than fp32), rounds every convolution's inputs and outputs to float16 and accumulates in float32, as
cuDNN's fp16 convolutions do. Its time ratio says nothing about a GPU. ``sian derain`` itself refuses fp16
on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import tempfile
from pathlib import Path

import torch

from sian.convert import import_weights
from sian.data import find_pairs, shared_folder
from sian.evaluate import evaluate
from sian.hub import load_model
from sian.inference import Pipeline
from sian.precision import PrecisionChoice, describe_machine
from sian.weights import WeightsNotFoundError

REPO = Path(__file__).resolve().parents[1]
EMULATED_FP16 = "emulated on the CPU to measure its rounding, not its speed"
FIELDS = ["name", "psnr_fp32", "ssim_fp32", "seconds_fp32", "psnr_reduced", "ssim_reduced", "seconds_reduced",
          "machine"]  # fmt: skip


def _load(name: str, device: str, shared: Path, tmp: str) -> torch.nn.Module:
    try:
        return load_model(name, device=device)
    except WeightsNotFoundError:
        if name != "sian-rain100l":
            raise
        path = import_weights(shared / "weights/sian_authors/rain100l.pth", name, dest_dir=tmp)
        return load_model(path, device=device)


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _mean(rows: list[dict], key: str) -> float:
    return sum(float(r[key]) for r in rows) / len(rows)


def _summary(rows: list[dict], args: argparse.Namespace, total: int) -> list[str]:
    deltas = [float(r["psnr_fp32"]) - float(r["psnr_reduced"]) for r in rows]
    lines = [
        f"# {args.model} on {len(rows)} of {total} Rain100L test pairs (summary of {datetime.date.today()})",
        f"fp32            {_mean(rows, 'psnr_fp32'):.4f} dB  {_mean(rows, 'ssim_fp32'):.4f}",
        f"{args.precision:<15} {_mean(rows, 'psnr_reduced'):.4f} dB  {_mean(rows, 'ssim_reduced'):.4f}",
        f"cost: {_mean(rows, 'psnr_fp32') - _mean(rows, 'psnr_reduced'):+.4f} dB mean PSNR (per image from "
        f"{min(deltas):+.4f} to {max(deltas):+.4f} dB), "
        f"{_mean(rows, 'ssim_fp32') - _mean(rows, 'ssim_reduced'):+.5f} SSIM",
    ]
    for machine in dict.fromkeys(r["machine"] for r in rows):  # times compare only within one machine
        on = [r for r in rows if r["machine"] == machine]
        fp32, reduced = _mean(on, "seconds_fp32"), _mean(on, "seconds_reduced")
        lines.append(f"time on {machine} ({len(on)} images): fp32 {fp32:.2f} s/image, {args.precision} "
                     f"{reduced:.2f} s/image, ratio {args.precision}/fp32 {reduced / fp32:.2f}")  # fmt: skip
    return lines


def _reduced_pipeline(model: torch.nn.Module, precision: str, quantization: str) -> Pipeline:
    """The pipeline ``sian eval --precision`` would build, except that fp16 on a CPU (refused there) is emulated."""
    emulate = precision == "fp16" and next(model.parameters()).device.type == "cpu"
    pipeline = Pipeline(model, precision="fp32" if emulate else precision, memory_budget=None,
                        quantization=quantization)  # fmt: skip
    if emulate:
        pipeline.precision = PrecisionChoice("fp16", EMULATED_FP16)
    return pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sian-rain100l")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--limit", type=int, default=0, help="stop after this many images in the CSV (0: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    shared = shared_folder(REPO.parent / "shared")
    pairs = find_pairs(shared / "data/Rain100L_test").pairs
    suffix = "" if args.device == "cpu" else f"-{args.device}"
    out = REPO / f"docs/results/precision/{args.model}-{args.precision}{suffix}.csv"
    rows = _read_rows(out)
    done = {r["name"] for r in rows}
    todo = [p for p in pairs if p.name not in done][: max(0, args.limit - len(rows)) if args.limit else None]
    quantization = "floor" if args.model.startswith("prenet") else "round"
    device = torch.cuda.get_device_name() if args.device == "cuda" else describe_machine()
    with tempfile.TemporaryDirectory() as tmp:
        model = _load(args.model, args.device, shared, tmp)
        reduced_pipeline = _reduced_pipeline(model, args.precision, quantization)
        if reduced_pipeline.precision.reason == EMULATED_FP16:  # the time column is the emulation's
            device += ", fp16 emulated"
        for pair in todo:
            (full,) = evaluate(model, [pair], quantization, precision="fp32")
            (reduced,) = evaluate(reduced_pipeline, [pair], quantization)
            row = dict(name=pair.name, psnr_fp32=f"{full.psnr:.6f}", ssim_fp32=f"{full.ssim:.6f}",
                       seconds_fp32=f"{full.seconds:.3f}", psnr_reduced=f"{reduced.psnr:.6f}",
                       ssim_reduced=f"{reduced.ssim:.6f}", seconds_reduced=f"{reduced.seconds:.3f}",
                       machine=device)  # fmt: skip
            new_file = not out.exists()
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS)
                if new_file:
                    writer.writeheader()
                writer.writerow(row)
            rows.append(row)
            print(f"{pair.name}: fp32 {full.psnr:.4f} dB, {args.precision} {reduced.psnr:.4f} dB", flush=True)
    if not rows:
        raise SystemExit("no images evaluated")
    lines = _summary(rows, args, len(pairs))
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
