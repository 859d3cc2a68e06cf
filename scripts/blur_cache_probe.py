"""What building the DoG's blur weights once (``sian.scale_space._Blurs``) saves per SIAN inference, in one process.

    python scripts/blur_cache_probe.py [--device cuda] [--size 481x321] [--precision fp32] [--turns 20]

SIAN's DoG pyramid blurs its features 96 times per forward. Each blur used to rebuild its depthwise
weights from the 1-D kernel (cast, two unsqueezes, outer product, expand: five small operations, 480 of
the 1276 a forward dispatched, ``scripts/op_count.py``); a DoGPyramid now builds them once per dtype,
device and width. This times the same model both ways in alternating turns (the old way restored by
routing every blur through ``gaussian_blur``, which builds per call), checks that the outputs are
bit-identical, and prints the medians and their ratio. The gain is a GPU's, where every operation costs
a launch; on a CPU inference runs the fused DoG kernel (``SIAN_NATIVE=0`` times the PyTorch path there).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

import torch

from sian import scale_space
from sian.benchmark import interleaved_times
from sian.inference import derain_tensor, resolve_device
from sian.models import create_model
from sian.precision import describe_device


@contextlib.contextmanager
def _weights_per_blur():
    """Every blur builds its weights again, as before the cache."""
    cached = scale_space._Blurs.__call__
    scale_space._Blurs.__call__ = lambda self, x, index: scale_space.gaussian_blur(x, self.kernels[index], self.border)
    try:
        yield
    finally:
        scale_space._Blurs.__call__ = cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--size", default="481x321")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    device = resolve_device(args.device)
    width, height = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    model = create_model("sian").eval().to(device, memory_format=torch.channels_last)
    image = torch.rand(1, 3, height, width)

    def run() -> torch.Tensor:
        return derain_tensor(model, image, memory_budget=None, precision=args.precision).cpu()

    def old() -> torch.Tensor:
        with _weights_per_blur():
            return run()

    if not torch.equal(run(), old()):
        raise SystemExit("the cached weights changed the output")
    times = interleaved_times({"cached": run, "per blur": old}, warmup=2, repeats=args.turns)
    cached, per_blur = statistics.median(times["cached"]), statistics.median(times["per blur"])
    ratios = sorted(a / b for a, b in zip(times["per blur"], times["cached"], strict=True))
    print(f"{describe_device(device)}; SIAN {args.size} {args.precision}, medians of {args.turns} alternating turns")
    spread = f"per-turn ratios {ratios[0]:.3f}-{ratios[-1]:.3f}"
    print(f"weights per blur {per_blur * 1e3:.2f} ms, cached {cached * 1e3:.2f} ms: {per_blur / cached:.3f}x")
    print(f"({spread}); outputs bit-identical")


if __name__ == "__main__":
    main()
