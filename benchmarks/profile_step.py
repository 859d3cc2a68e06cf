"""Where a training step (or an inference) spends its time: torch.profiler over two steps of one model.

    python benchmarks/profile_step.py sian|prenet [THREADS] [cl|infer] [PRECISION]

Prints the mean step time over three steps (after two warm-up steps) and the operators sorted by their
own CPU time; ``cl`` runs the model and inputs in channels_last; ``infer`` profiles inference on one
481x321 image instead, the way `sian bench` runs it (Pipeline: channels_last, no autograd), in PRECISION
(fp32 unless given: bf16 for the autocast path).
docs/performance.md compares the share of the time spent outside convolutions in SIAN
and PReNet with it. Pause any training first.
"""

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from sian.models import create_model
from sian.training.losses import stage_loss

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
name = sys.argv[1]
channels_last = len(sys.argv) > 3 and sys.argv[3] == "cl"
inference = len(sys.argv) > 3 and sys.argv[3] == "infer"
torch.manual_seed(0)
model = create_model(name).train()
x, y = torch.rand(4, 3, 120, 120), torch.rand(4, 3, 120, 120)
if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(model.parameters(), 1e-4)


def step() -> None:
    optimizer.zero_grad(set_to_none=True)
    stage_loss(model(x), y).backward()
    optimizer.step()


if inference:
    from sian.inference import Pipeline

    precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    pipeline = Pipeline(model.eval(), precision=precision, memory_budget=None)
    image = torch.rand(1, 3, 321, 481)

    def step() -> None:  # the inference variant
        pipeline.tensor(image)


for _ in range(2):
    step()
start = time.perf_counter()
for _ in range(3):
    step()
print(name, "channels_last" if channels_last else "contiguous", f"{(time.perf_counter() - start) / 3:.3f} s/step")
with profile(activities=[ProfilerActivity.CPU]) as prof:
    step()
    step()
table = prof.key_averages()
total = sum(e.self_cpu_time_total for e in table)
convolution = sum(
    e.self_cpu_time_total
    for e in table
    if e.key in ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::_convolution")
)
print(f"outside convolutions: {100 * (1 - convolution / total):.0f}% of the step's own CPU time")
print(table.table(sort_by="self_cpu_time_total", row_limit=25))
