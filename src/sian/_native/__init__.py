"""Compiled kernels, built on first use with the system's C compiler and cached; ``None`` where they cannot be.

Three, each in a C file whose header says why it is written by hand: the fused DoG octave (``dog.c``), the
ConvLSTM cell's pointwise update (``convlstm.c``) and two pointwise steps of SIAN's pyramid (``pyramid.c``).
Each is compiled with ``-O3 -march=native -fopenmp`` (its threads are PyTorch's own OpenMP threads) into
``$SIAN_CACHE`` (default ``~/.cache/sian``) under a name that hashes the source, the headers beside it, the
compiler and this CPU's model and flags, so a cache shared by different machines never runs code built for
another CPU. Building takes about a second; without a C compiler with OpenMP, or with ``SIAN_NATIVE=0``,
callers use their PyTorch path (the same numbers either way, to float rounding; tests compare the two).
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

import torch
from torch import Tensor
from torch.utils._python_dispatch import _len_torch_dispatch_stack

__all__ = [
    "convlstm_library", "dog_library", "inference_maps", "kernel_serves", "native_enabled", "pyramid_library",
    "untraced",
]  # fmt: skip

logger = logging.getLogger(__name__)

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


def _build(name: str, purpose: str, signatures: dict[str, tuple[list, type | None]]) -> ctypes.CDLL | None:
    """The compiled ``name`` (a C file beside this one), built once per source (with the headers beside it),
    compiler, flags and CPU, its functions typed by ``signatures`` (function: (argument types, result type));
    or ``None`` (turned off, no compiler, or the build failed: ``purpose`` then runs as PyTorch operations)."""
    if not native_enabled():
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        logger.debug(f"no C compiler found: {purpose} runs as PyTorch operations")
        return None
    source_path = Path(__file__).with_name(name)
    sources = [source_path.read_bytes(), *(h.read_bytes() for h in sorted(source_path.parent.glob("*.h")))]
    key = hashlib.sha256(b"\0".join([*sources, compiler.encode(), " ".join(FLAGS).encode(), _cpu_signature().encode()]))
    path = _cache_dir() / f"{source_path.stem}-{key.hexdigest()[:16]}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Built beside its final name and renamed into place: processes that start together (torchrun
            # ranks) may build at once, and none may load a half-written file.
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                built = Path(tmp) / path.name
                subprocess.run([compiler, *FLAGS, str(source_path), "-o", str(built)], check=True,
                               capture_output=True, timeout=300)  # fmt: skip
                os.replace(built, path)
        library = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        logger.debug(f"could not build or load {path.name} ({exc}; {detail.decode(errors='replace')[-500:]}): "
                     f"{purpose} runs as PyTorch operations")  # fmt: skip
        return None
    for symbol, (argtypes, restype) in signatures.items():
        function = getattr(library, symbol)
        function.argtypes, function.restype = argtypes, restype
    return library


_I64, _PTR = ctypes.c_int64, ctypes.c_void_p


@functools.lru_cache(maxsize=1)
def dog_library() -> ctypes.CDLL | None:
    """The compiled DoG kernel (``sian_dog_octave`` of dog.c); ``None`` where it cannot be built."""
    return _build("dog.c", "the DoG pyramid", {
        "sian_dog_octave": ([_PTR, ctypes.c_int, *[_I64] * 4, _PTR, *[_I64] * 2, _PTR, ctypes.c_int, _PTR, _I64],
                            ctypes.c_int),
    })  # fmt: skip


@functools.lru_cache(maxsize=1)
def convlstm_library() -> ctypes.CDLL | None:
    """The compiled ConvLSTM update (``sian_convlstm_update`` of convlstm.c); ``None`` where it cannot be built."""
    return _build("convlstm.c", "the ConvLSTM update", {
        "sian_convlstm_update": ([*[_PTR] * 4, ctypes.c_int, _I64, _I64, ctypes.c_int], None),
    })  # fmt: skip


@functools.lru_cache(maxsize=1)
def pyramid_library() -> ctypes.CDLL | None:
    """SIAN's pyramid steps (``sian_attend`` and ``sian_upsample_concat`` of pyramid.c); ``None`` where they cannot
    be built."""
    return _build("pyramid.c", "the attention and coarse-to-fine steps", {
        "sian_attend": ([*[_PTR] * 3, ctypes.c_int, _I64, ctypes.c_int], None),
        "sian_upsample_concat": ([*[_PTR] * 3, ctypes.c_int, *[_I64] * 6, ctypes.c_int], None),
    })  # fmt: skip


def kernel_serves(library, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether a compiled kernel computes inference on this device and map dtype: float32 or bfloat16 (autocast)
    on a CPU, where ``library()`` (one of the ``*_library`` functions above) could be built.

    Examples:
        >>> kernel_serves(convlstm_library, torch.device("cpu"), torch.float64)
        False
    """
    if device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16):
        return False
    return _is_built(library.__name__) if torch.compiler.is_compiling() else library() is not None


def _is_built(library: str) -> bool:
    """Whether the named ``*_library`` could be built: under torch.compile asked once, as the graph is traced
    (building runs a compiler, which no graph can hold), and a constant of the graph after."""
    return globals()[library]() is not None


# The mark torch.compiler.assume_constant_result(_is_built) sets, and all it does; calling it would import
# torch._dynamo, over a second of every start-up, for a mark only torch.compile (which imports it anyway) reads.
_is_built._dynamo_marked_constant = True  # type: ignore[attr-defined]


def untraced(*tensors: Tensor) -> bool:
    """Whether a compiled kernel may work on these tensors: plain tensors that nothing records, or a graph that
    torch.compile builds.

    torch.compile calls the kernels as the custom operators they are (:mod:`sian._native.ops`). An export (ONNX
    through torch.export), a JIT tracer, a fake tensor or a dispatch mode (torch's FLOP counter) sees PyTorch
    operations: an exported graph must run where these kernels do not exist. (Autograd too: callers check it.)
    """
    if torch.compiler.is_compiling():
        return not torch.compiler.is_exporting()
    return (
        all(type(t) is Tensor for t in tensors)
        and not torch.jit.is_tracing()
        and _len_torch_dispatch_stack() == 0 and torch._C._len_torch_function_stack() == 0
    )  # fmt: skip


def inference_maps(*tensors: Tensor) -> bool:
    """Whether a compiled pointwise kernel may compute on these maps: CPU tensors of one dtype, float32 or bfloat16,
    channels_last, that neither autograd (training) nor a tracer (:func:`untraced`) records.

    Examples:
        >>> inference_maps(torch.zeros(1, 2, 3, 3, dtype=torch.float64))
        False
    """
    first = tensors[0]
    return (
        untraced(*tensors)  # first: under a tracer, reading shapes and layouts would add guards to the graph
        and first.device.type == "cpu" and first.dtype in (torch.float32, torch.bfloat16)
        and all(t.dtype == first.dtype and t.device == first.device and t.ndim == 4
                and t.is_contiguous(memory_format=torch.channels_last) for t in tensors)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
    )  # fmt: skip
