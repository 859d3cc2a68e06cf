"""Image files in and out: reading to RGB arrays, atomic writing that never clobbers by accident."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "from_tensor",
    "read_image",
    "to_tensor",
    "write_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """A file that is not a readable image."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``uint8`` RGB ``(H, W, 3)``, applying its EXIF orientation."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB")).copy()
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc


def write_image(path: str | os.PathLike, image: np.ndarray, overwrite: bool = False) -> Path:
    """Write a ``uint8`` RGB array atomically: to a temporary file beside ``path``, then renamed.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        Image.fromarray(image).save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_tensor(image: np.ndarray) -> Tensor:
    """``(H, W, 3)`` array (uint8, or float in [0, 1]) to a ``(1, 3, H, W)`` float32 tensor in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    array = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]


def from_tensor(image: Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` or ``(3, H, W)`` tensor to a float32 ``(H, W, 3)`` array (not clipped)."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    return image.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
