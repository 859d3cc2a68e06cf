"""Training checkpoints: one self-contained state file, written atomically.

``state.pt`` holds the model, optimizer and scheduler states, the step, the best validation score,
the torch RNG state and the config. It is written to a temporary file in the same folder, flushed to
disk and renamed over the previous one, so a crash or a kill at any moment leaves either the old or
the new checkpoint, never a half-written one. Loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_path

__all__ = ["STATE_FILE", "load_state", "save_state"]

STATE_FILE = "state.pt"


def save_state(out_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / STATE_FILE
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    return target


def load_state(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The latest state in ``out_dir``, or ``None`` if there is none."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
