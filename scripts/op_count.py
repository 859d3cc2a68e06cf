"""How many PyTorch operations one inference forward dispatches, SIAN against PReNet.

    python scripts/op_count.py [HEIGHT] [WIDTH]

On a GPU each operation costs a launch and Python's dispatch whatever its size, so a model of many small
operations is bound by their count, not its multiply-adds: docs/benchmarks.md ("On a GPU") uses this to explain
why SIAN's time on an H200 exceeds PReNet's by more than its FLOPs do. Counted with a dispatch mode on the CPU,
through the PyTorch operations (``SIAN_NATIVE=0`` is set here: the fused CPU kernel would hide the DoG's blurs,
which a GPU runs as operations); the count does not depend on the image size.
"""

from __future__ import annotations

import collections
import os
import sys

os.environ["SIAN_NATIVE"] = "0"  # before sian is imported: the GPU's path, PyTorch operations for the DoG

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sian.models import create_model


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_ops(name: str, height: int, width: int) -> collections.Counter[str]:
    """The operations of one inference forward of a freshly built ``name`` on a random image, by name."""
    model = create_model(name).eval()
    with torch.inference_mode(), _Count() as counter:
        model(torch.rand(1, 3, height, width))
    return counter.counts


def main() -> None:
    height, width = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (64, 64)
    for name in ("sian", "prenet"):
        counts = count_ops(name, height, width)
        top = ", ".join(f"{op} {n}" for op, n in counts.most_common(8))
        print(f"{name}: {sum(counts.values())} operations per forward at {width}x{height} ({top})")


if __name__ == "__main__":
    main()
