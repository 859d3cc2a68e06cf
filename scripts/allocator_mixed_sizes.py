"""Peak memory of one process deraining images of mixed sizes, with the allocator setting and with its older form.

    python scripts/allocator_mixed_sizes.py new|old [IMAGES]

``sian._allocator`` keeps freed memory in the process and, since 2026-11-27, serves blocks above 32 MB from the
heap as well (``M_MMAP_MAX = 0``) instead of fresh ``mmap`` calls. A heap fragments where ``mmap``'d blocks do
not, so a long-lived process (``sian serve``) seeing images of many sizes might grow past the largest image's
need. This derains IMAGES (default 14) random images of 200-800 pixels a side (fixed seed), SIAN fp32 whole
images as a ``Pipeline`` runs them, and prints the process's peak and final resident memory and the time;
``old`` applies the settings of before (mmap threshold 32 MB, no trim, 256 MB top pad) instead.
"""

from __future__ import annotations

import ctypes
import random
import sys
import time

import torch

from sian import _allocator


def _status(field: str) -> int:
    """A /proc/self/status memory field in MB."""
    return int(open("/proc/self/status").read().split(f"{field}:")[1].split()[0]) // 1024


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "new"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 14
    if mode == "old":  # every setting of keep_freed_memory but M_MMAP_MAX, before the Pipeline applies them all
        libc = ctypes.CDLL("libc.so.6")
        for option, value in _allocator._SETTINGS:
            if option != _allocator._M_MMAP_MAX:
                libc.mallopt(option, value)
        _allocator.keep_freed_memory = lambda: True  # the Pipeline's call must not apply the new setting
    from sian.inference import Pipeline
    from sian.models import create_model

    torch.set_num_threads(2)
    pipeline = Pipeline(create_model("sian").eval(), precision="fp32", memory_budget=None)
    rng = random.Random(0)
    sizes = [(rng.randrange(200, 800), rng.randrange(200, 800)) for _ in range(count)]
    start = time.perf_counter()
    for height, width in sizes:
        pipeline.tensor(torch.rand(1, 3, height, width))
    largest = max(h * w for h, w in sizes) / 1e6
    print(f"{mode}: {count} images, largest {largest:.2f} MP: peak RSS {_status('VmHWM')} MB, "
          f"final {_status('VmRSS')} MB, {time.perf_counter() - start:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
