"""Keep freed memory for reuse instead of handing it back to the kernel (glibc ``mallopt``).

A SIAN training step allocates and frees tensors of 20-40 MB hundreds of times (DoG stacks, gate
tensors, their gradients). With glibc's defaults the largest of those are served by fresh ``mmap``
calls and the heap top is trimmed back to the kernel, so every step page-faults the same memory in
again. Raising the trim threshold and the top pad (and fixing the mmap threshold at its maximum)
keeps that memory in the process: a 4x120x120 SIAN training step ran 3.7% faster in our measurement
(``docs/performance.md``), PReNet's unchanged. PyTorch's CPU tuning guide suggests jemalloc or tcmalloc
for the same reason; those need ``LD_PRELOAD`` before start-up, this needs nothing.

Allocations above glibc's largest mmap threshold (32 MB) were still served by fresh ``mmap`` calls and
unmapped when freed, whatever the threshold: at 768x768 (about the automatic tile of large photos) a SIAN
forward's 32-channel float32 maps are 75 MB, each faulted in and zeroed afresh by the kernel. Taking
them from the heap as well (``M_MMAP_MAX = 0``: no ``mmap`` at all) made a 12 MP photo in fp32 1.15x faster
(``docs/performance.md``, "Large photos"); its peak rose 10%, while a process deraining images of mixed sizes
peaked 10-13% lower (the probe ``scripts/allocator_mixed_sizes.py`` of commit 8c360b5).

The cost is that the process's resident memory stays at its peak (it was reached anyway), and the setting is
the whole process's: every ``sian`` command (``derain``, ``serve``, ``eval``, ``train``, ``bench``, ...) turns it
on at start-up, while importing or calling the library leaves the host program's allocator alone. A program
that derains or trains in a loop opts in with ``sian.keep_freed_memory()``. A no-op where the C library is not
glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["freed_memory_kept", "keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4  # glibc's <malloc.h>
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
_KEEP = 2**31 - 1
# (option, value) for mallopt: every block from the heap (no mmap), nothing trimmed back, the heap grown 256 MB ahead.
_SETTINGS = (
    (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _KEEP),
    (_M_TOP_PAD, 256 * 1024 * 1024),
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Keep freed memory in this process for reuse (glibc ``mallopt``, see :mod:`sian._allocator`): faster
    repeated derains and training steps, resident memory held at its peak. Applies once per process; returns
    ``True`` if the C library took the settings. The ``sian`` command does this itself; library users opt in."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (macOS, musl, Windows): leave the allocator alone
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in _SETTINGS)


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` has been applied in this process (and the C library took it)."""
    return keep_freed_memory.cache_info().currsize > 0 and keep_freed_memory()
