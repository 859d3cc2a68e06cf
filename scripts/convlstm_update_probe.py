"""What the compiled ConvLSTM update (sian/_native/convlstm.c) saves per inference, SIAN and PReNet, in one process.

    python scripts/convlstm_update_probe.py [--size 481x321] [--precision fp32 --precision bf16] [--turns 9]

Both models run a ConvLSTM cell per level and stage (SIAN 18 a forward, PReNet 6). Its update after the gate
convolution, as PyTorch operations, is six passes over memory; the compiled kernel does it in one. This times
each model both ways in alternating turns (the PyTorch update restored by hiding the compiled library), as
`sian derain` runs it (channels_last, no autograd, autocast for bf16), and prints the medians, their ratio
and the largest difference between the two outputs. Pause any training first.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics

import torch

from sian.benchmark import interleaved_times
from sian.inference import derain_tensor
from sian.models import create_model, layers
from sian.precision import describe_machine


@contextlib.contextmanager
def _pytorch_update():
    compiled = layers.convlstm_library
    layers.convlstm_library = lambda: None
    try:
        yield
    finally:
        layers.convlstm_library = compiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="481x321")
    parser.add_argument("--precision", action="append")
    parser.add_argument("--turns", type=int, default=9)
    args = parser.parse_args()
    if layers.convlstm_library() is None:
        raise SystemExit("the compiled ConvLSTM update could not be built here (no C compiler, or SIAN_NATIVE=0)")
    width, height = (int(v) for v in args.size.split("x"))
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    print(f"{describe_machine()}; {args.size}, medians of {args.turns} alternating turns")
    for name in ("sian", "prenet"):
        torch.manual_seed(0)
        model = create_model(name).eval().to(memory_format=torch.channels_last)
        for precision in args.precision or ["fp32", "bf16"]:
            fused = functools.partial(derain_tensor, model, image, memory_budget=None, precision=precision)

            def pytorch(fused=fused) -> torch.Tensor:
                with _pytorch_update():
                    return fused()

            difference = (fused() - pytorch()).abs().max().item()
            times = interleaved_times({"compiled": fused, "pytorch": pytorch}, warmup=1, repeats=args.turns)
            compiled, plain = statistics.median(times["compiled"]), statistics.median(times["pytorch"])
            ratios = sorted(a / b for a, b in zip(times["pytorch"], times["compiled"], strict=True))
            print(f"{name} {precision}: PyTorch update {plain:.3f} s, compiled {compiled:.3f} s: "
                  f"{plain / compiled:.3f}x (per-turn {ratios[0]:.3f}-{ratios[-1]:.3f}); "
                  f"outputs differ by at most {difference:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
