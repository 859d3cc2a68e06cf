"""What a compiled kernel (sian/_native) saves per inference, SIAN and PReNet, in one process.

    python scripts/native_kernel_probe.py [--kernel convlstm | --kernel pyramid] [--size 481x321 | --image PHOTO]
                                          [--precision fp32 --precision bf16] [--turns 9] [--model sian --model prenet]

``convlstm``: the ConvLSTM update after the gate convolution (convlstm.c; SIAN runs 18 cells a forward, PReNet
6), six passes over memory as PyTorch operations. ``pyramid``: SIAN's attention step and the input of its
coarse-to-fine fusions (pyramid.c; PReNet has neither, so it times the same both ways). This times each model
with and without the kernel in alternating turns (the PyTorch operations restored by hiding the compiled
library), as `sian derain` runs it (channels_last, no autograd, autocast for bf16), and prints the medians, their
ratio and the largest difference between the two outputs; for bf16 also each output's mean distance from the
fp32 output (the kernels round once, PyTorch after every operation). Models are named weights
(``sian-general``) or architectures with random weights (``sian``, ``prenet``); the image is random unless
given. Pause any training first.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics

import torch

from sian.benchmark import interleaved_times
from sian.hub import load_model
from sian.inference import derain_tensor
from sian.io import read_image, to_tensor
from sian.models import create_model, layers, list_models, sian_arch
from sian.precision import describe_machine

# Where each kernel's library is looked up: hiding it there restores the PyTorch operations.
KERNELS = {"convlstm": (layers, "convlstm_library"), "pyramid": (sian_arch, "pyramid_library")}


@contextlib.contextmanager
def _without(kernel: str):
    module, name = KERNELS[kernel]
    compiled = getattr(module, name)
    setattr(module, name, lambda: None)
    try:
        yield
    finally:
        setattr(module, name, compiled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", choices=sorted(KERNELS), default="convlstm")
    parser.add_argument("--size", default="481x321")
    parser.add_argument("--precision", action="append")
    parser.add_argument("--turns", type=int, default=9)
    parser.add_argument("--image", help="a photo to derain (default: a random image of --size)")
    parser.add_argument("--model", action="append", help="named weights or an architecture (default: sian, prenet)")
    args = parser.parse_args()
    module, name = KERNELS[args.kernel]
    if getattr(module, name)() is None:
        raise SystemExit(f"the {args.kernel} kernel could not be built here (no C compiler, or SIAN_NATIVE=0)")
    if args.image:
        image = to_tensor(read_image(args.image))
    else:
        width, height = (int(v) for v in args.size.split("x"))
        image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    where = args.image or f"a random {args.size} image"
    print(f"{describe_machine()}; {args.kernel} kernel; {where}, medians of {args.turns} alternating turns")
    for name in args.model or ["sian", "prenet"]:
        torch.manual_seed(0)
        model = create_model(name) if name in list_models() else load_model(name)
        model = model.eval().to(memory_format=torch.channels_last)
        for precision in args.precision or ["fp32", "bf16"]:
            fused = functools.partial(derain_tensor, model, image, memory_budget=None, precision=precision)

            def pytorch(fused=fused) -> torch.Tensor:
                with _without(args.kernel):
                    return fused()

            compiled_out, pytorch_out = fused(), pytorch()
            difference = (compiled_out - pytorch_out).abs().max().item()
            if precision != "fp32":
                fp32 = derain_tensor(model, image, memory_budget=None, precision="fp32")
                distances = [(out - fp32).abs().mean().item() for out in (compiled_out, pytorch_out)]
                print(f"{name} {precision}: mean |output - fp32's|: compiled {distances[0]:.3e}, "
                      f"PyTorch {distances[1]:.3e}")  # fmt: skip
            times = interleaved_times({"compiled": fused, "pytorch": pytorch}, warmup=1, repeats=args.turns)
            compiled, plain = statistics.median(times["compiled"]), statistics.median(times["pytorch"])
            ratios = sorted(a / b for a, b in zip(times["pytorch"], times["compiled"], strict=True))
            print(f"{name} {precision}: PyTorch {plain:.3f} s, compiled {compiled:.3f} s: "
                  f"{plain / compiled:.3f}x (per-turn {ratios[0]:.3f}-{ratios[-1]:.3f}); "
                  f"outputs differ by at most {difference:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
