"""Which tile size and overlap derain a large photo fastest per megapixel in bounded memory.

    python benchmarks/tile_study.py [--sizes 256 384 512 640 768 896 1024] [--repeats 2] [--width 4000 --height 3000]
                                 [--precision fp32|auto|bf16]

1. Seconds per megapixel and peak resident memory of SIAN on one square tile of each size, each size in a
   fresh child process (so one size's peak does not hide in another's), random weights of the release
   configuration (time and memory do not depend on the weights).
2. For the photo size, the tile layouts `sian.tiling.tile_starts` makes for each (tile, overlap): how many
   pixels they derain and the predicted time (tiles x seconds per pixel of their size), so the choice is
   the measured optimum under the memory bound, not a guess.
Each tile runs through `sian.inference.Pipeline` (untiled) at ``--precision``, so `auto` times what `sian derain`
runs by default on this machine.
Pause training first: the timings share the cores with anything else running.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from sian.tiling import tile_starts

CHILD = """
import json, sys, time, torch
from sian._allocator import keep_freed_memory
from sian.inference import Pipeline
from sian.models import create_model
keep_freed_memory()
size, repeats, precision = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
model = create_model("sian").eval().to(memory_format=torch.channels_last)
pipeline = Pipeline(model, precision=precision, memory_budget=None)
x = torch.rand(1, 3, size, size)
times = []
pipeline.tensor(x)
for _ in range(repeats):
    start = time.perf_counter()
    pipeline.tensor(x)
    times.append(time.perf_counter() - start)
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
ran = pipeline.precision.precision
print(json.dumps({"size": size, "seconds": min(times), "peak_bytes": peak, "precision": ran}))
"""


def measure(size: int, repeats: int, precision: str) -> dict:
    command = [sys.executable, "-c", CHILD, str(size), str(repeats), precision]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fixed_size_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """The earlier layout: ``tile``-sized tiles, the last one pushed back to the border."""
    if tile >= length:
        return [(0, length)]
    stride = max(align, (tile - overlap) // align * align)
    last = (length - tile) // align * align
    return [*((start, tile) for start in range(0, last, stride)), (last, length - last)]


def predicted_seconds(height, width, tile, overlap, per_pixel: dict[int, float], layout) -> tuple:
    """Tiles, pixels derained and predicted seconds of one photo: each tile at the measured seconds per pixel
    of the nearest measured tile size at or above it (evenly spread tiles are smaller than ``tile``)."""
    ys, xs = layout(height, tile, overlap, 4), layout(width, tile, overlap, 4)
    sizes = sorted(per_pixel)
    seconds = pixels = 0
    for _, th in ys:
        for _, tw in xs:
            side = next((s for s in sizes if s >= max(th, tw)), sizes[-1])
            seconds += th * tw * per_pixel[side]
            pixels += th * tw
    return len(ys) * len(xs), pixels, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512, 640, 768, 896, 1024])
    parser.add_argument("--overlaps", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--precision", default="fp32", help="as `sian derain --precision` (default fp32)")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu()}; --precision {args.precision}")
    print("| tile | precision run | s / MP | peak RSS (MB) |\n|---|---|---|---|")
    per_pixel, peaks = {}, {}
    for size in args.sizes:
        result = measure(size, args.repeats, args.precision)
        per_pixel[size] = result["seconds"] / size**2
        peaks[size] = result["peak_bytes"]
        row = f"| {size} | {result['precision']} | {per_pixel[size] * 1e6:.2f} | {peaks[size] / 2**20:.0f} |"
        print(row, flush=True)
    megapixels = args.width * args.height / 1e6
    print(f"\n{args.width}x{args.height} ({megapixels:.1f} MP), predicted from the table:\n")
    print("| layout | tile | overlap | tiles | pixels derained / photo | predicted s | s / MP | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, layout in (("fixed (before)", fixed_size_starts), ("even (tile_starts)", tile_starts)):
        for size in args.sizes:
            for overlap in args.overlaps:
                tiles, pixels, seconds = predicted_seconds(args.height, args.width, size, overlap, per_pixel, layout)
                print(f"| {name} | {size} | {overlap} | {tiles} | {pixels / (args.width * args.height):.2f}x | "
                      f"{seconds:.0f} | {seconds / megapixels:.2f} | {peaks[size] / 2**20:.0f} |")  # fmt: skip


def cpu() -> str:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Model name")), "?")
    flags = next((line for line in info.splitlines() if line.startswith("Flags")), "")
    features = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return f"{name}, features {' '.join(features)}"


if __name__ == "__main__":
    main()
