"""How many PyTorch operations one inference forward dispatches, SIAN against PReNet.

    python scripts/op_count.py [HEIGHT] [WIDTH]

On a GPU each operation costs a launch and Python's dispatch whatever its size, so a model of many small
operations is bound by their count, not its multiply-adds: docs/benchmarks.md ("On a GPU") uses this to explain
why SIAN's time on an H200 exceeds PReNet's by more than its FLOPs do. Counted with a dispatch mode on the CPU,
which sees the PyTorch operations a GPU runs (the fused CPU kernel of the DoG stays out of a dispatch mode), in
the second forward (the first also builds what a model caches); the count barely depends on the image size.
"""

from __future__ import annotations

import collections
import sys

import torch

from sian.benchmark import operation_counts
from sian.models import create_model


def count_ops(name: str, height: int, width: int) -> collections.Counter[str]:
    """The operations of one inference forward of ``name`` on a random image, by name (after a first forward)."""
    model = create_model(name).eval()
    image = torch.rand(1, 3, height, width)
    with torch.inference_mode():
        model(image)
        return operation_counts(lambda: model(image))


def main() -> None:
    height, width = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (64, 64)
    for name in ("sian", "prenet"):
        counts = count_ops(name, height, width)
        top = ", ".join(f"{op} {n}" for op, n in counts.most_common(8))
        print(f"{name}: {sum(counts.values())} operations per forward at {width}x{height} ({top})")


if __name__ == "__main__":
    main()
