"""``sian bench``: inference and training speed of SIAN against PReNet, in one run on the same inputs.

Speed on a shared machine drifts, so the figure that matters is the *ratio* SIAN/PReNet measured in
the same run. Each measurement warms up, repeats and takes the median. Peak memory is the peak
resident set size of a fresh subprocess that runs only that measurement (RSS never shrinks, so one
process per measurement is the only honest way to attribute it).
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import torch
from torch.utils.flop_counter import FlopCounterMode

from .inference import derain_tensor
from .models import create_model

__all__ = ["BenchRow", "bench_inference", "bench_training", "run_benchmark"]


@dataclass
class BenchRow:
    kind: str  # inference | training
    model: str
    size: str  # WxH (inference) or BxPxP (training)
    seconds: float  # median per image (inference) or per step (training)
    megapixels_per_second: float
    gflops: float  # FLOPs (2 x multiply-adds) of one forward (inference) or one step (training)
    gflops_per_second: float
    peak_rss_mb: float


def _median_time(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _count_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def bench_inference(model_name: str, width: int, height: int, warmup: int = 1, repeats: int = 3) -> BenchRow:
    torch.manual_seed(0)
    model = create_model(model_name).eval().to(memory_format=torch.channels_last)
    image = torch.rand(1, 3, height, width)

    def run():
        derain_tensor(model, image, memory_budget=None)  # the path `sian derain` takes

    flops = _count_flops(run)
    seconds = _median_time(run, warmup, repeats)
    return BenchRow("inference", model_name, f"{width}x{height}", seconds, width * height / seconds / 1e6,
                    flops / 1e9, flops / seconds / 1e9, _peak_rss_mb())  # fmt: skip


def bench_training(model_name: str, batch: int, patch: int, warmup: int = 1, repeats: int = 3) -> BenchRow:
    from .training.losses import stage_loss

    torch.manual_seed(0)
    model = create_model(model_name).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    rainy, clean = torch.rand(batch, 3, patch, patch), torch.rand(batch, 3, patch, patch)

    def step():
        optimizer.zero_grad(set_to_none=True)
        stage_loss(model(rainy), clean).backward()
        optimizer.step()

    flops = _count_flops(step)
    seconds = _median_time(step, warmup, repeats)
    pixels = batch * patch * patch
    return BenchRow("training", model_name, f"{batch}x{patch}x{patch}", seconds, pixels / seconds / 1e6,
                    flops / 1e9, flops / seconds / 1e9, _peak_rss_mb())  # fmt: skip


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _isolated(spec: dict) -> BenchRow:
    """Run one measurement in a fresh interpreter (clean peak-RSS accounting)."""
    code = (
        "import json, sys; from dataclasses import asdict; from sian import benchmark as b; "
        "spec = json.loads(sys.argv[1]); kind = spec.pop('kind'); "
        "row = b.bench_inference(**spec) if kind == 'inference' else b.bench_training(**spec); "
        "print('BENCH ' + json.dumps(asdict(row)))"
    )
    result = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark {spec} failed:\n{result.stderr}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH "))
    return BenchRow(**json.loads(line[len("BENCH ") :]))


def run_benchmark(
    sizes: list[tuple[int, int]], train_batch: int = 4, train_patch: int = 120, repeats: int = 3,
    models: tuple[str, ...] = ("sian", "prenet"),
) -> tuple[list[BenchRow], dict]:  # fmt: skip
    """Every model at every size, interleaved, then training throughput; plus a machine description."""
    rows = []
    for width, height in sizes:
        for name in models:
            rows.append(_isolated({"kind": "inference", "model_name": name, "width": width, "height": height,
                                   "repeats": repeats}))  # fmt: skip
    for name in models:
        rows.append(_isolated({"kind": "training", "model_name": name, "batch": train_batch, "patch": train_patch,
                               "repeats": repeats}))  # fmt: skip
    machine = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return rows, machine


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def to_markdown(rows: list[BenchRow], machine: dict, models: tuple[str, str] = ("sian", "prenet")) -> str:
    lines = [
        f"Measured {machine['date']} on {machine['cpu']} ({machine['threads']} threads), "
        f"torch {machine['torch']}, Python {machine['python']}.",
        "",
        "| kind | model | size | s | MP/s | GFLOP | GFLOP/s | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.kind} | {r.model} | {r.size} | {r.seconds:.3f} | {r.megapixels_per_second:.4f} | "
                     f"{r.gflops:.1f} | {r.gflops_per_second:.1f} | {r.peak_rss_mb:.0f} |")  # fmt: skip
    lines.append("")
    a, b = models
    for kind_size in dict.fromkeys((r.kind, r.size) for r in rows):
        pair = {r.model: r for r in rows if (r.kind, r.size) == kind_size}
        if a in pair and b in pair:
            time_ratio, flop_ratio = pair[a].seconds / pair[b].seconds, pair[a].gflops / pair[b].gflops
            lines.append(f"- {kind_size[0]} {kind_size[1]}: time ratio {a}/{b} = {time_ratio:.2f} "
                         f"(FLOP ratio {flop_ratio:.2f})")  # fmt: skip
    return "\n".join(lines) + "\n"


def rows_to_json(rows: list[BenchRow], machine: dict) -> str:
    return json.dumps({"machine": machine, "rows": [asdict(r) for r in rows]}, indent=2)
