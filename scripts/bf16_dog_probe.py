"""What SIAN's DoG pyramid costs under bf16 autocast, and whether the fused float32 kernel should serve it (issue 16).

    python scripts/bf16_dog_probe.py [TURNS]

1. One stage's DoG stacks (a 32-channel 481x321 map, three octaves) as the inference path computes them:
   through the fused kernel (sian/_native/dog.c) from float32 and from bf16 maps, and through PyTorch
   operations in bf16 and in float32; median ms of TURNS + 3 calls after 3 warm-ups.
2. A whole bf16 inference of `sian-synth-light` on Rain100L's rain-001 (needs $SIAN_SHARED), in alternating
   turns: the DoG through the fused kernel in bf16 (the default), as PyTorch bf16 operations (before), and
   upcast to float32 for the fused kernel; and how far each output is from fp32's.
Run it on a CPU with native bf16 (AMX or AVX512-BF16), training paused. docs/benchmarks.md quotes it.
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import sian.scale_space as scale_space
from sian.data.shared import shared_folder
from sian.inference import resolve_model
from sian.precision import autocast, describe_machine
from sian.scale_space import gaussian_kernels, sift_sigmas

turns = int(sys.argv[1]) if len(sys.argv) > 1 else 7
print(describe_machine())
kernels = gaussian_kernels(sift_sigmas(1.6, 3), "release")
features = torch.randn(1, 32, 321, 481).contiguous(memory_format=torch.channels_last)
stacks = scale_space._dog_stacks


def stage_ms(x: torch.Tensor, fused: bool) -> float:
    reuse, times = [], []
    original = scale_space._fusable
    if not fused:
        scale_space._fusable = lambda *args: False
    try:
        with torch.inference_mode():
            for _ in range(turns + 6):
                start = time.perf_counter()
                stacks(x, kernels, 3, "release", reuse)
                times.append(time.perf_counter() - start)
    finally:
        scale_space._fusable = original
    return statistics.median(times[3:]) * 1e3


print(f"one stage's DoG: fused float32 {stage_ms(features, True):.1f} ms, "
      f"fused bf16 {stage_ms(features.bfloat16(), True):.1f} ms, "
      f"PyTorch bf16 {stage_ms(features.bfloat16(), False):.1f} ms, "
      f"PyTorch float32 {stage_ms(features, False):.1f} ms")  # fmt: skip


def upcast(x, kernels, octaves, mode, reuse=None, blurs=None):
    if x.dtype == torch.bfloat16:
        x = x.float().contiguous(memory_format=torch.channels_last)
    return stacks(x, kernels, octaves, mode, reuse, blurs)


def pytorch_bf16(x, kernels, octaves, mode, reuse=None, blurs=None):
    return scale_space._streamed_dogs(x, kernels, octaves, mode, reuse, blurs)


VARIANTS = {"fused bf16": stacks, "PyTorch bf16": pytorch_bf16, "upcast to fused float32": upcast}


model = resolve_model("sian-synth-light", torch.device("cpu")).eval().to(memory_format=torch.channels_last)
rainy = shared_folder(Path(__file__).resolve().parents[2] / "shared") / "data/Rain100L_test/rainy/rain-001.png"
image = torch.from_numpy(np.array(Image.open(rainy).convert("RGB"))).permute(2, 0, 1)[None].float().div(255)
image = image.contiguous(memory_format=torch.channels_last)


def infer(variant: str) -> tuple[float, torch.Tensor]:
    scale_space._dog_stacks = VARIANTS[variant]
    try:
        start = time.perf_counter()
        with torch.inference_mode(), autocast("bf16", torch.device("cpu")):
            output = model(image)
        return time.perf_counter() - start, output.float()
    finally:
        scale_space._dog_stacks = stacks


times = {variant: [] for variant in VARIANTS}
for turn in range(turns + 1):
    for variant in list(VARIANTS)[:: 1 if turn % 2 == 0 else -1]:
        seconds, _ = infer(variant)
        if turn:  # the first turn warms up
            times[variant].append(seconds)
with torch.inference_mode():
    reference = model(image)
medians = ", ".join(f"DoG {variant} {statistics.median(t):.3f} s" for variant, t in times.items())
print(f"bf16 inference, medians of {turns} turns: {medians}")
for variant in VARIANTS:
    difference = (infer(variant)[1] - reference).abs()
    print(f"DoG {variant}: |output - fp32| mean {difference.mean():.3g}, max {difference.max():.3g}")
