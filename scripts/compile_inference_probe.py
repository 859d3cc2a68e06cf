"""Does torch.compile change SIAN's inference cost relative to PReNet's? Eager and compiled, in turns.

    python scripts/compile_inference_probe.py [THREADS] [TURNS] [HEIGHT] [WIDTH] [freeze]

For each model (channels_last, no autograd, as `sian bench` runs it): compiles it with inductor (``freeze``:
with ``torch._inductor.config.freezing``, which prepacks the convolution weights and fuses their
pointwise neighbours), checks the compiled output against eager, then times eager and compiled forwards in
alternating order. Prints the medians and the SIAN/PReNet ratio eager and compiled. Issue 16 allows
torch.compile as an opt-in for the fp32 ratio; docs/benchmarks.md gives what this measured.
"""

from __future__ import annotations

import functools
import statistics
import sys
import time

import torch
import torch._inductor.config as inductor_config

from sian._allocator import keep_freed_memory
from sian.benchmark import interleaved_times
from sian.models import create_model
from sian.precision import describe_machine


def main() -> None:
    threads, turns = int(sys.argv[1]) if len(sys.argv) > 1 else 2, int(sys.argv[2]) if len(sys.argv) > 2 else 5
    height, width = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (321, 481)
    inductor_config.freezing = "freeze" in sys.argv[5:]
    torch.set_num_threads(threads)
    keep_freed_memory()
    image = torch.rand(1, 3, height, width).contiguous(memory_format=torch.channels_last)
    medians = {}
    for name in ("sian", "prenet"):
        torch.manual_seed(0)
        model = create_model(name).eval().to(memory_format=torch.channels_last)
        with torch.inference_mode():
            compiled = torch.compile(model)
            start = time.perf_counter()
            difference = (compiled(image) - model(image)).abs().max().item()
            print(f"{name}: compiled in {time.perf_counter() - start:.0f} s, max |compiled - eager| {difference:.1e}")
            runs = {"eager": functools.partial(model, image), "compiled": functools.partial(compiled, image)}
            times = interleaved_times(runs, warmup=0, repeats=turns)
        medians[name] = {label: statistics.median(values) for label, values in times.items()}
        print(f"{name}: eager {medians[name]['eager']:.3f} s, compiled {medians[name]['compiled']:.3f} s")
    freezing = "with freezing" if inductor_config.freezing else "without freezing"
    print(f"{describe_machine()}, {threads} threads, {width}x{height}, {turns} turns, {freezing}")
    for label in ("eager", "compiled"):
        print(f"SIAN/PReNet {label}: {medians['sian'][label] / medians['prenet'][label]:.3f}")


if __name__ == "__main__":
    main()
