"""Which floating-point precision to compute in, and the autocast context that applies it.

One place decides this for training (``train.precision``), inference and ``sian bench``:

- ``fp32``: plain float32.
- ``bf16``: autocast to bfloat16 (CPU or GPU). Fast only where the hardware multiplies bf16 natively:
  CPUs with AMX-BF16 or AVX512-BF16, and GPUs that support it. Elsewhere it is emulated and slower.
- ``fp16``: autocast to float16, CUDA only (training adds a gradient scaler).
- ``auto``: ``bf16`` where the hardware runs it natively; on a GPU without bf16 but with fp16 tensor cores
  (compute capability 7.x: Volta, Turing), ``fp16``; ``fp32`` everywhere else.

Features are read from PyTorch's own CPU probe (cpuinfo) and, failing that, from the kernel's
``/proc/cpuinfo`` flags, never from the CPU's model name; a oneDNN held below them (``ONEDNN_MAX_CPU_ISA``,
or oneDNN turned off) counts as not having them, since oneDNN runs the convolutions.

Examples:
    >>> import torch
    >>> choice = resolve_precision("auto", torch.device("cpu"), features={"amx_bf16": False, "avx512_bf16": False})
    >>> choice.precision, choice.reason
    ('fp32', 'auto: this CPU has neither AMX-BF16 nor AVX512-BF16, so bf16 would be emulated (slower)')
    >>> resolve_precision("auto", torch.device("cpu"), features={"amx_bf16": True, "avx512_bf16": True}).precision
    'bf16'
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "PRECISIONS",
    "PrecisionChoice",
    "autocast",
    "cpu_features",
    "cpu_name",
    "describe_device",
    "describe_machine",
    "fp16_tensor_cores",
    "ieee_fp32",
    "native_bf16",
    "onednn_isa_cap",
    "resolve_precision",
]

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# The CPU features that matter for precision, with the /proc/cpuinfo flag of each.
_CPU_FLAGS = {"amx_bf16": "amx_bf16", "avx512_bf16": "avx512_bf16", "avx512_f": "avx512f", "avx2": "avx2"}


@functools.lru_cache(maxsize=1)
def cpu_features() -> dict[str, bool]:
    """The CPU's bf16-relevant instruction-set features: ``amx_bf16``, ``avx512_bf16``, ``avx512_f``, ``avx2``.

    Examples:
        >>> sorted(cpu_features())
        ['amx_bf16', 'avx2', 'avx512_bf16', 'avx512_f']
    """
    probe = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)  # cpuinfo, as PyTorch sees it
    if probe is not None:
        found = probe()
        if all(key in found for key in _CPU_FLAGS):
            return {key: bool(found[key]) for key in _CPU_FLAGS}
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {key: flag in flags for key, flag in _CPU_FLAGS.items()}


def cpu_name() -> str:
    """The CPU's model name as the kernel reports it (for records only: features are never read from it)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """One line for every recorded figure: CPU, cores, the features that decide precision, torch.

    Examples:
        >>> "cores" in describe_machine() and "torch" in describe_machine()
        True
    """
    features = cpu_features()
    present = ", ".join(k for k, v in features.items() if v) or "none of " + ", ".join(features)
    return f"{cpu_name()}, {os.cpu_count()} cores ({present}), torch {torch.__version__}"


def describe_device(device: torch.device) -> str:
    """:func:`describe_machine` for a CPU, the GPU's name and torch for a CUDA device (training logs record it).

    Examples:
        >>> describe_device(torch.device("cpu")) == describe_machine()
        True
    """
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return describe_machine()


def native_bf16(device: torch.device, features: dict[str, bool] | None = None) -> tuple[bool, str]:
    """Whether ``device`` multiplies bf16 natively, and why (``features`` overrides the CPU probe, for tests)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name(device)} supports bf16"
        return False, f"{torch.cuda.get_device_name(device)} has no native bf16"
    if device.type != "cpu":
        return False, f"no bf16 detection for {device.type} devices"
    features = cpu_features() if features is None else features
    if not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled:
        return False, "oneDNN is off (torch.backends.mkldnn), so bf16 convolutions would be emulated (slower)"
    level, setting = onednn_isa_cap() or (None, "")
    if features.get("amx_bf16") and (level is None or level in _ONEDNN_AMX):
        return True, "this CPU has AMX-BF16"
    if features.get("avx512_bf16") and (level is None or level in _ONEDNN_BF16):
        amx_unused = f" (and AMX-BF16, which {setting} keeps oneDNN from)" if features.get("amx_bf16") else ""
        return True, f"this CPU has AVX512-BF16{amx_unused}"
    if features.get("amx_bf16") or features.get("avx512_bf16"):
        return False, f"{setting} keeps oneDNN from this CPU's bf16 instructions, so bf16 would be emulated (slower)"
    return False, "this CPU has neither AMX-BF16 nor AVX512-BF16, so bf16 would be emulated (slower)"


# oneDNN's ISA levels (its ONEDNN_MAX_CPU_ISA values): those that multiply bf16 natively, and those with AMX.
# A cap below them leaves bf16 convolutions emulated, slower than fp32 (docs/performance.md: 2.6x fp32's time
# under AVX512_CORE, 7x under AVX2, on an AVX512-BF16 CPU).
_ONEDNN_AMX = {"avx10_1_512_amx", "avx512_core_amx", "avx10_1_512_amx_fp16", "avx512_core_amx_fp16"}
_ONEDNN_BF16 = {"avx512_core_bf16", "avx10_1_512", "avx512_core_fp16", *_ONEDNN_AMX}
_ONEDNN_BELOW_BF16 = {"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni"}


def onednn_isa_cap() -> tuple[str, str] | None:
    """oneDNN's instruction-set cap from the environment, as ``(level, "VARIABLE=value")``; ``None`` if uncapped.

    oneDNN reads ``ONEDNN_MAX_CPU_ISA`` (or the older ``DNNL_MAX_CPU_ISA``) once, when it starts: a user or a
    container may set it below the CPU's bf16 instructions. Values oneDNN does not know cap nothing here.

    Example (``ONEDNN_MAX_CPU_ISA=AVX2`` gives ``('avx2', 'ONEDNN_MAX_CPU_ISA=AVX2')``):
        >>> cap = onednn_isa_cap()
        >>> cap is None or cap[1].startswith(("ONEDNN_MAX_CPU_ISA=", "DNNL_MAX_CPU_ISA="))
        True
    """
    for variable in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(variable, "").strip()
        if value:
            level = value.lower()
            return (level, f"{variable}={value}") if level in _ONEDNN_BF16 | _ONEDNN_BELOW_BF16 else None
    return None


def fp16_tensor_cores(device: torch.device) -> tuple[bool, str]:
    """Whether the CUDA ``device`` multiplies fp16 on tensor cores (compute capability >= 7.0), and why.

    Asked only of GPUs without native bf16 (Volta and Turing): there fp16 autocast runs the convolutions on
    tensor cores, several times fp32's rate, and costs SIAN less PSNR than bf16 (docs/performance.md). Older
    GPUs (Pascal and before) have no tensor cores, and some of them run fp16 far slower than fp32: fp32.
    """
    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    if major >= 7:
        return True, f"{name} has no native bf16 but has fp16 tensor cores (compute capability {major}.{minor})"
    return False, f"{name} has neither native bf16 nor tensor cores (compute capability {major}.{minor})"


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # fp32 | bf16 | fp16: what runs
    reason: str  # why, in words (for logs, `sian bench`, `--verbose`)

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES.get(self.precision, torch.float32)


def resolve_precision(precision: str, device: torch.device, features: dict[str, bool] | None = None) -> PrecisionChoice:
    """Turn a requested precision (one of :data:`PRECISIONS`) into the one that runs on ``device``.

    Raises ``ValueError`` for an unknown name and for ``fp16`` off CUDA (CPU float16 is emulated).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs a CUDA device; on a CPU use bf16 (or auto)")
    if precision != "auto":
        return PrecisionChoice(precision, "requested")
    native, why = native_bf16(device, features)
    if native:
        return PrecisionChoice("bf16", f"auto: {why}")
    if device.type == "cuda":
        fp16, why = fp16_tensor_cores(device)
        if fp16:
            return PrecisionChoice("fp16", f"auto: {why}")
    return PrecisionChoice("fp32", f"auto: {why}")


def autocast(choice: PrecisionChoice | str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for ``choice`` on ``device``; for fp32, :func:`ieee_fp32` (no TF32 on CUDA).

    Examples:
        >>> import torch
        >>> with autocast("bf16", torch.device("cpu")):
        ...     y = torch.nn.functional.conv2d(torch.rand(1, 3, 8, 8), torch.rand(4, 3, 3, 3))
        >>> y.dtype
        torch.bfloat16
    """
    if isinstance(choice, str):
        choice = resolve_precision(choice, device)
    if choice.precision == "fp32":
        return ieee_fp32(device)
    return torch.autocast(device.type, dtype=choice.dtype)


@contextlib.contextmanager
def ieee_fp32(device: torch.device) -> Iterator[None]:
    """Float32 convolutions in IEEE float32 on CUDA, restored on exit (a no-op elsewhere).

    cuDNN runs float32 convolutions in TF32 (a 10-bit mantissa) by default, so "fp32" on a GPU would score
    benchmarks a little differently from the CPU, and train differently: ``fp32`` here means float32.

    Examples:
        >>> with ieee_fp32(torch.device("cuda")):
        ...     torch.backends.cudnn.conv.fp32_precision
        'ieee'
    """
    if device.type != "cuda":
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)  # torch >= 2.9; before it, only the older flag exists
    owner, flag, value = (
        (conv, "fp32_precision", "ieee") if conv is not None else (torch.backends.cudnn, "allow_tf32", False)
    )
    saved = getattr(owner, flag)
    setattr(owner, flag, value)
    try:
        yield
    finally:
        setattr(owner, flag, saved)
