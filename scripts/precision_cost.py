"""The PSNR cost of reduced precision (issue 5): Rain100L test through one model in fp32 and in bf16/fp16.

    python scripts/precision_cost.py [--model sian-rain100l] [--precision bf16] [--limit N] [--device cpu]

Imports the authors' Rain100L SIAN from $SIAN_SHARED/weights when --model is sian-rain100l and it is not
installed. Prints mean Y-PSNR/SSIM of both runs, the largest per-image PSNR change and the time ratio,
and writes the same to docs/results/precision-<precision>.txt. On CPUs without native bf16 (no AVX512-BF16
or AMX), bf16 autocast is emulated and much slower than fp32; it saves time only on hardware that has it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
from pathlib import Path

import torch

from sian.data import find_pairs
from sian.evaluate import evaluate, summarize
from sian.weights import WeightsNotFoundError, import_weights, load_model

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sian-rain100l")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    shared = Path(os.environ.get("SIAN_SHARED", REPO.parent / "shared"))
    pairs = find_pairs(shared / "data/Rain100L_test").pairs[: args.limit or None]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            model = load_model(args.model, device=args.device)
        except WeightsNotFoundError:
            if args.model != "sian-rain100l":
                raise
            path = import_weights(shared / "weights/sian_authors/rain100l.pth", args.model, dest_dir=tmp)
            model = load_model(path, device=args.device)
        quantization = "floor" if args.model.startswith("prenet") else "round"
        full = evaluate(model, pairs, quantization, precision="fp32")
        reduced = evaluate(model, pairs, quantization, precision=args.precision)
    a, b = summarize(full), summarize(reduced)
    worst = max(abs(x.psnr - y.psnr) for x, y in zip(full, reduced, strict=True))
    cpu = f"{os.cpu_count()} CPU cores {platform.machine()}"
    device = torch.cuda.get_device_name() if args.device == "cuda" else cpu
    ratio = b.seconds_per_image / a.seconds_per_image
    lines = [
        f"# {args.model} on {len(pairs)} Rain100L test pairs, {datetime.date.today()}, {device}, "
        f"torch {torch.__version__}",
        f"fp32            {a.psnr:.4f} dB  {a.ssim:.4f}  {a.seconds_per_image:.2f} s/image",
        f"{args.precision:<15} {b.psnr:.4f} dB  {b.ssim:.4f}  {b.seconds_per_image:.2f} s/image",
        f"cost: {a.psnr - b.psnr:+.4f} dB mean PSNR (largest per-image change {worst:.4f} dB), "
        f"{a.ssim - b.ssim:+.5f} SSIM; time ratio {args.precision}/fp32 {ratio:.2f}",
    ]
    out = REPO / f"docs/results/precision-{args.precision}.txt"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
