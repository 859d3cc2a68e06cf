"""GFLOP/s of every convolution shape SIAN and PReNet run at 481x321 (fp32, channels_last, no autograd),
and the time of SIAN's DoG pyramid, the part of its inference that FLOPs do not count.

    python scripts/conv_efficiency.py [THREADS]

Each shape is timed alone (median of 9 after two warm-ups) with random weights. A shape that runs well below
the others spends its time on something other than multiply-adds; docs/benchmarks.md (issue 16) uses it
to look for the part of SIAN's inference that its FLOP count does not explain: the last line times one
stage's DoG pyramid (16 depthwise 3x3 blurs over three octaves and the 15 differences, as inference streams
them) on a 32-channel 481x321 map. Pause any training first.
"""

from __future__ import annotations

import functools
import statistics
import sys

import torch
import torch.nn.functional as F

from sian._allocator import keep_freed_memory
from sian.benchmark import interleaved_times
from sian.precision import describe_machine
from sian.scale_space import DoGPyramid

# (input channels, output channels, resolution divisor, who runs it)
SHAPES = [
    (6, 32, 1, "both: input conv"),
    (32, 32, 1, "both: SIAN levels and head, PReNet residual blocks"),
    (160, 32, 1, "SIAN: DoG attention"),
    (64, 128, 1, "both: ConvLSTM gates"),
    (32, 128, 1, "both: ConvLSTM gates, first stage"),
    (64, 32, 1, "SIAN: coarse-to-fine fusion"),
    (32, 3, 1, "both: output conv"),
    (32, 32, 2, "SIAN: 1/2 level"),
    (160, 32, 2, "SIAN: 1/2 attention"),
    (64, 128, 2, "SIAN: 1/2 ConvLSTM"),
    (32, 32, 4, "SIAN: 1/4 level"),
    (160, 32, 4, "SIAN: 1/4 attention"),
    (64, 128, 4, "SIAN: 1/4 ConvLSTM"),
]


def median_seconds(fn) -> float:
    return statistics.median(interleaved_times({"run": fn}, warmup=2, repeats=9)["run"])


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(threads)
    keep_freed_memory()
    print(f"{describe_machine()}, {threads} threads")
    print("| in -> out | resolution | ms | GFLOP/s | used by |\n|---|---|---|---|---|")
    with torch.inference_mode():
        for cin, cout, divisor, user in SHAPES:
            x = torch.randn(1, cin, 321 // divisor, 481 // divisor).contiguous(memory_format=torch.channels_last)
            weight = torch.randn(cout, cin, 3, 3).contiguous(memory_format=torch.channels_last)
            bias = torch.randn(cout)
            seconds = median_seconds(functools.partial(F.conv2d, x, weight, bias, padding=1))
            flops = 2 * cin * cout * 9 * x.shape[-2] * x.shape[-1]
            size = f"{x.shape[-1]}x{x.shape[-2]}"
            print(f"| {cin} -> {cout} | {size} | {1e3 * seconds:.2f} | {flops / seconds / 1e9:.0f} | {user} |")
        features = torch.randn(1, 32, 321, 481).contiguous(memory_format=torch.channels_last)
        pyramid, stacks = DoGPyramid(), []  # stacks reused between calls, as SIAN's stages do
        seconds = median_seconds(functools.partial(pyramid, features, stacks))
        print(f"\nDoG pyramid of one stage (32x321x481, release kernels): {1e3 * seconds:.1f} ms")


if __name__ == "__main__":
    main()
