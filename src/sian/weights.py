"""Weight files: safetensors whose metadata carry the architecture and its full config, so a file
rebuilds its model without guessing. Reading, writing, and loading into a model with named errors.

The registry of named weights and their loading live in :mod:`sian.hub`; the conversion of the
authors' pickled checkpoints in :mod:`sian.convert`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ._atomic import atomic_path

__all__ = [
    "FORMAT",
    "WeightsError",
    "WeightsNotFoundError",
    "load_state_dict_checked",
    "read_weights_file",
    "save_weights",
    "sha256_file",
    "tensors_sha256",
]

FORMAT = "sian-weights/1"


class WeightsError(RuntimeError):
    """A weight file that cannot be used: wrong hash, wrong architecture, unreadable."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """Named weights that are not installed on this machine."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensors_sha256(state: Mapping[str, Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and values, independent of the file's metadata.

    A run's checkpoint and its shipped copy hold the same tensors under different metadata (and safetensors
    orders metadata freely), so their file hashes differ while this one is equal: results keyed by it carry
    over from the checkpoint to the shipped file.

    Examples:
        >>> import torch
        >>> tensors_sha256({"w": torch.zeros(2)}) == tensors_sha256({"w": torch.zeros(2)})
        True
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# --- reading and writing ------------------------------------------------------------------------


def save_weights(
    path: str | os.PathLike, model_or_state: nn.Module | Mapping[str, Tensor], arch: str,
    config: Mapping[str, Any], **metadata: str,
) -> Path:  # fmt: skip
    """Write weights as safetensors with ``arch``/``config`` metadata, atomically (temp file + rename)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"format": FORMAT, "arch": arch, "config": json.dumps(dict(config), sort_keys=True), **metadata}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return path


def read_weights_file(
    path: str | os.PathLike,
) -> tuple[str, dict[str, Any], dict[str, Tensor], dict[str, str]]:
    """Read a safetensors weight file: ``(arch, config, state_dict, metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weight file not found: {path}")
    if path.suffix.lower() in {".pth", ".pt", ".pkl", ".ckpt"}:
        raise WeightsError(
            f"{path} is a PyTorch pickle; pickles are not loaded directly. Convert it once with "
            f"'sian weights import {path} --name NAME' and load the name (or the .safetensors it writes)."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no mapping)
    except Exception as exc:
        raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from exc
    if metadata.get("format") != FORMAT or "arch" not in metadata or "config" not in metadata:
        raise WeightsError(
            f"{path} has no sian metadata (format/arch/config); it was not written by sian. "
            "Import it with 'sian weights import FILE --name NAME --variant VARIANT'."
        )
    return metadata["arch"], json.loads(metadata["config"]), state, metadata


def load_state_dict_checked(model: nn.Module, state: Mapping[str, Tensor], source: str = "weights") -> None:
    """``load_state_dict`` that names every missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        lines = [f"{source} do not fit the {type(model).__name__} architecture:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if shapes:
            lines.append(f"  shape mismatches ({len(shapes)}): {'; '.join(shapes)}")
        raise WeightsError("\n".join(lines))
    model.load_state_dict(state, strict=True)
