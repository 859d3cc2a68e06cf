"""What a user waits for on the default path, per design: one-shot time and throughput, in one run.

    python benchmarks/default_path.py [--rounds 3] [--images 20] [--baseline WORKTREE]
                                      [--designs kernels,eager,compile,compile-kernels] [--out benchmarks/results]

Designs (each in its own fresh processes, the rounds alternating them, medians reported):

- ``kernels``: ``sian.Pipeline`` as it ships (the C kernels of ``sian._native`` where they build), in a process
  that keeps freed memory as every ``sian`` command does (``sian.keep_freed_memory()``), as do all designs below;
- ``library``: the same in a program that did not opt in to keeping freed memory (a library user's default);
- ``eager``: the same with ``SIAN_NATIVE=0`` (PyTorch's operations only);
- ``compile``: ``SIAN_NATIVE=0`` and ``torch.compile`` (inductor) of the model, one graph per image size;
- ``compile-freeze``: the same with inductor's freezing (weights folded into the graph as constants);
- ``compile-kernels``: ``torch.compile`` with the C kernels on, which the graph calls as custom operators
  (``sian._native.ops``) while inductor fuses the rest;
- ``onnx``: the default model exported to ONNX (``sian export``; PyTorch's operations, no kernels) and run by
  onnxruntime's CPU provider; the export counts as its cold start, a cached file as its warm one;
- ``baseline``: the default path of another checkout (``--baseline``, e.g. a worktree of the commit before a
  change), run with this environment's packages.

One-shot: a fresh process imports sian, builds the pipeline and derains one 481x321 image; the wall time of the
whole process is reported (start-up included). For the compiled designs twice: with an empty inductor cache
(``cold``) and with the cache the cold run left (``warm``: a user's second run). Throughput: one process derains
``--images`` same-size images after one warm-up image; images per second over those, plus the warm-up image's
time (for the compiled designs, with a warm cache). Images: the 481x321 Rain100L test inputs of
``$SIAN_SHARED`` when present, else seeded noise of that size. Results: one JSON file in ``--out`` with every
run and the machine (``lscpu``), and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGNS = ("baseline", "kernels", "library", "eager", "compile", "compile-freeze", "compile-kernels", "onnx")
COMPILED = ("compile", "compile-freeze", "compile-kernels", "onnx")  # a cold and a warm one-shot each

# The child: derain N images (the first one timed on its own) with one design's pipeline.
CHILD = r"""
import json, os, sys, time
start = time.perf_counter()
import numpy as np, torch, sian
design, count = sys.argv[1], int(sys.argv[2])
paths = sys.argv[3:]
if design != "library":
    from sian._allocator import keep_freed_memory
    keep_freed_memory()  # what every `sian` command does at start-up
pipeline = sian.Pipeline()
if design == "onnx":
    from pathlib import Path
    from sian.export import OnnxModel, export_onnx
    exported = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]) / "default-model.onnx"  # the run's cache folder
    if not exported.is_file():
        export_onnx(sian.DEFAULT_MODEL, exported)
    pipeline = sian.Pipeline(OnnxModel(exported))
if design.startswith("compile"):
    if design == "compile-freeze":
        import torch._inductor.config as inductor
        inductor.freezing = True
    pipeline.model = torch.compile(pipeline.model, dynamic=False)
from sian.io import read_image
if paths:
    images = [read_image(p) for p in paths]
else:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (321, 481, 3), dtype=np.uint8) for _ in range(count + 1)]
first_start = time.perf_counter()
pipeline(images[0])
first = time.perf_counter() - first_start
timed = time.perf_counter()
for image in images[1 : count + 1]:
    pipeline(image)
rest = time.perf_counter() - timed
print(json.dumps({"first": first, "rest": rest, "count": count, "in_process": time.perf_counter() - start,
                  "describe": pipeline.describe(), "module": sian.__file__}))
"""


def test_images(count: int) -> list[str]:
    shared = Path(os.environ.get("SIAN_SHARED", REPO.parent / "shared")) / "data" / "Rain100L_test" / "rainy"
    if not shared.is_dir():
        return []
    from PIL import Image

    found = []
    for path in sorted(shared.glob("*.png")):
        with Image.open(path) as image:
            if image.size == (481, 321):
                found.append(str(path.resolve()))
        if len(found) == count:
            return found
    return []


def run_child(design: str, count: int, images: list[str], baseline: Path | None, cache: str) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
    if design in ("eager", "compile", "compile-freeze"):
        env["SIAN_NATIVE"] = "0"
    if design == "baseline":
        env["PYTHONPATH"] = str(baseline / "src")
    wall = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, design, str(count), *images[: count + 1]],
                         env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())  # fmt: skip
    wall = time.perf_counter() - wall
    if out.returncode:
        raise SystemExit(f"{design} failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall": wall}


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    import torch

    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "lscpu": lscpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--designs", default="kernels,library,eager,compile,compile-freeze,compile-kernels")
    parser.add_argument("--baseline", type=Path, help="a checkout whose default path is the baseline design")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    designs = list(dict.fromkeys(d for d in args.designs.split(",") if d and d != "baseline"))
    if args.baseline:
        designs.insert(0, "baseline")
    unknown = set(designs) - set(DESIGNS)
    if unknown:
        raise SystemExit(f"unknown designs {sorted(unknown)}; choose from {DESIGNS}")
    images = test_images(args.images + 1)
    runs = []
    for round_index in range(args.rounds):
        for design in designs:
            with tempfile.TemporaryDirectory() as cache:
                one_shot = run_child(design, 0, images, args.baseline, cache)
                row = {"round": round_index, "design": design, "one_shot": one_shot["wall"],
                       "describe": one_shot["describe"], "module": one_shot["module"]}  # fmt: skip
                if design in COMPILED:
                    row["one_shot_warm"] = run_child(design, 0, images, args.baseline, cache)["wall"]
                many = run_child(design, args.images, images, args.baseline, cache)
            row.update(first_image=many["first"], images_per_second=many["count"] / many["rest"])
            runs.append(row)
            print(json.dumps(row), flush=True)
    report = {"machine": machine(), "images": "Rain100L test 481x321" if images else "noise 481x321",
              "count": args.images, "runs": runs}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
    path = args.out / f"default-path-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"wrote {path}")


def table(report: dict) -> str:
    """Medians per design; throughput also as a ratio to the first design listed."""
    designs = list(dict.fromkeys(r["design"] for r in report["runs"]))
    med = {d: {key: statistics.median(r[key] for r in report["runs"] if r["design"] == d and key in r)
               for key in ("one_shot", "one_shot_warm", "first_image", "images_per_second")
               if any(key in r for r in report["runs"] if r["design"] == d)} for d in designs}  # fmt: skip
    reference = med[designs[0]]["images_per_second"]
    lines = [f"| design | one-shot s (cold) | one-shot s (warm cache) | first image s | images/s | vs {designs[0]} |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for d in designs:
        m = med[d]
        warm = f"{m['one_shot_warm']:.2f}" if "one_shot_warm" in m else "-"
        lines.append(f"| {d} | {m['one_shot']:.2f} | {warm} | {m['first_image']:.2f} | "
                     f"{m['images_per_second']:.3f} | {m['images_per_second'] / reference:.2f}x |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
