"""Where one inference's time goes inside oneDNN, SIAN and PReNet per precision: which kernels ran, how long.

    python scripts/onednn_breakdown.py [HEIGHT] [WIDTH] [PRECISION ...]      (default: 321 481 fp32 bf16)

Runs each precision in a fresh process with ``ONEDNN_VERBOSE=1`` (oneDNN reads it once, at start-up), as
`sian bench` runs inference (channels_last, no autograd, autocast for bf16, two threads unless
OMP_NUM_THREADS says otherwise), and sums the verbose log of the fourth forward by primitive and
implementation: ``brg_conv_fwd:avx512_core_amx`` means AMX tiles multiplied, ``avx512_core_bf16`` AVX512-BF16
dot products, anything else with bf16 an emulation. What oneDNN does not time (the fused DoG kernel, the
ConvLSTM's pointwise operations, Python) is the wall time less the oneDNN total. Issue 16 uses it to tell
how close a precision's speed-up can come to its convolutions' (docs/benchmarks.md, "Reduced precision").
"""

from __future__ import annotations

import collections
import itertools
import os
import subprocess
import sys
import time

CHILD = "--child"
WARM_UP = 3


def child(name: str, height: int, width: int, precision: str) -> None:
    import contextlib

    import torch

    from sian._allocator import keep_freed_memory
    from sian.models import create_model

    keep_freed_memory()  # as `sian bench` does: a warm forward then reuses its memory instead of faulting it in
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    model = create_model(name).eval().to(memory_format=torch.channels_last)
    image = torch.rand(1, 3, height, width).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        for _ in range(WARM_UP):  # the first creates the primitives and builds the native kernel
            model(image)
        print("=== timed forward", flush=True)
        start = time.perf_counter()
        model(image)
        print(f"=== wall {1000 * (time.perf_counter() - start):.1f} ms", flush=True)


def summarize(log: str) -> tuple[collections.Counter[str], collections.Counter[str], float]:
    """(ms, calls) per ``primitive implementation`` in the timed forward of a child's log, and its wall time."""
    timed = log.split("=== timed forward", 1)[1]
    ms: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    wall = float("nan")
    for line in timed.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and len(fields) > 6 and fields[3] == "exec":
            key = f"{fields[5]} {fields[6]}"
            ms[key] += float(fields[-1])
            calls[key] += 1
        elif line.startswith("=== wall"):
            wall = float(line.split()[2])
    return ms, calls, wall


def main() -> None:
    if sys.argv[1:2] == [CHILD]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    args = sys.argv[1:]
    height, width = (int(args[0]), int(args[1])) if len(args) >= 2 else (321, 481)
    precisions = args[2:] or ["fp32", "bf16"]
    from sian.precision import describe_machine

    print(f"{describe_machine()}; inference at {width}x{height}, fourth forward (after {WARM_UP})")
    for name, precision in itertools.product(("sian", "prenet"), precisions):
        env = dict(os.environ, ONEDNN_VERBOSE="1")
        result = subprocess.run(
            [sys.executable, __file__, CHILD, name, str(height), str(width), precision],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        ms, calls, wall = summarize(result.stdout)
        total = sum(ms.values())
        share = f"{100 * total / wall:.0f}%"
        print(f"{name} {precision}: wall {wall:.0f} ms, oneDNN {total:.0f} ms ({share}), outside {wall - total:.0f} ms")
        for key, spent in ms.most_common():
            print(f"  {key}: {calls[key]} calls, {spent:.1f} ms")


if __name__ == "__main__":
    main()
