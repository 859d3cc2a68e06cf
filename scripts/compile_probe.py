"""Does torch.compile speed up a SIAN training step on this CPU? Eager and compiled steps, alternating.

    python scripts/compile_probe.py [THREADS] [STEPS]

One process: compiles the model (inductor, the default backend; the time to the first compiled step is
printed), then times forward + loss + backward of a 4x96x96 batch (the Rain100L run's step) eagerly and
compiled in alternating order, and prints the median of the per-turn ratios compiled/eager. Measured
and dropped for now (docs/benchmarks.md); rerun it on a new CPU or torch release before trying again.
"""

import statistics
import sys
import time

import torch

from sian import _allocator
from sian.models import create_model
from sian.training.trainer import forward_loss

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
turns = int(sys.argv[2]) if len(sys.argv) > 2 else 6
torch.set_num_threads(threads)
_allocator.keep_freed_memory()  # as training runs
torch.manual_seed(0)
net = create_model("sian").train()
rainy, clean = torch.rand(4, 3, 96, 96), torch.rand(4, 3, 96, 96)


def step(model: torch.nn.Module) -> float:
    net.zero_grad(set_to_none=True)
    start = time.perf_counter()
    _, loss = forward_loss(model, rainy, clean, "ssim", "fp32")
    loss.backward()
    return time.perf_counter() - start


start = time.perf_counter()
compiled = torch.compile(net)
step(compiled)
print(f"compile and first step: {time.perf_counter() - start:.0f} s")
step(net)  # eager warm-up
ratios = []
for turn in range(turns):
    if turn % 2:
        compiled_s, eager_s = step(compiled), step(net)
    else:
        eager_s, compiled_s = step(net), step(compiled)
    ratios.append(compiled_s / eager_s)
    print(f"turn {turn}: eager {eager_s:.2f} s, compiled {compiled_s:.2f} s")
print(f"{threads} threads, torch {torch.__version__}: compiled/eager median {statistics.median(ratios):.2f}")
