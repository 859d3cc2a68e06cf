"""Compiled kernels, built on first use with the system's C compiler and cached; ``None`` where they cannot be.

There is one: the fused DoG octave of ``dog.c`` (see its header for why it is written by hand). It is
compiled with ``-O3 -march=native -fopenmp`` (its threads are PyTorch's own OpenMP threads) into
``$SIAN_CACHE`` (default ``~/.cache/sian``) under a name that hashes the source, the compiler and this CPU's
model and flags, so a cache shared by different machines never runs code built for another CPU. Building
takes about a second; without a C compiler with OpenMP, or with ``SIAN_NATIVE=0``, callers use their
PyTorch path (:func:`sian.scale_space.dog_pyramid` gives the same numbers either way, to float rounding).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["dog_library", "native_enabled"]

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("dog.c")
FLAGS = ("-O3", "-march=native", "-std=c11", "-fopenmp", "-shared", "-fPIC")


def native_enabled() -> bool:
    """``False`` when the user turned the compiled kernels off (``SIAN_NATIVE=0``)."""
    return os.environ.get("SIAN_NATIVE", "1") != "0"


def _cache_dir() -> Path:
    return Path(os.environ.get("SIAN_CACHE") or Path.home() / ".cache" / "sian") / "native"


def _cpu_signature() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(dict.fromkeys(wanted))  # every core repeats them: once each


@functools.lru_cache(maxsize=1)
def dog_library() -> ctypes.CDLL | None:
    """The compiled DoG kernel (``sian_dog_octave``), built once per source, compiler and CPU; or ``None``."""
    if not native_enabled():
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        logger.debug("no C compiler found: the DoG pyramid runs as PyTorch operations")
        return None
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(FLAGS).encode(), _cpu_signature().encode()]))
    path = _cache_dir() / f"dog-{key.hexdigest()[:16]}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Built beside its final name and renamed into place: processes that start together (torchrun
            # ranks) may build at once, and none may load a half-written file.
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                built = Path(tmp) / path.name
                subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], check=True, capture_output=True,
                               timeout=300)  # fmt: skip
                os.replace(built, path)
        library = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        logger.debug(f"could not build or load {path.name} ({exc}; {detail.decode(errors='replace')[-500:]}): "
                     "the DoG pyramid runs as PyTorch operations")  # fmt: skip
        return None
    function = library.sian_dog_octave
    function.argtypes = [ctypes.c_void_p, ctypes.c_int, *[ctypes.c_int64] * 4, ctypes.c_void_p, *[ctypes.c_int64] * 2,
                         ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64]  # fmt: skip
    function.restype = ctypes.c_int
    return library
