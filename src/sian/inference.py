"""Running a model on images: tensors, arrays and PIL images in, the same kind out."""

from __future__ import annotations

import os
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .io import from_tensor, to_tensor
from .metrics import Quantize, quantize
from .precision import PRECISIONS, autocast, resolve_precision
from .tiling import tiled_apply
from .weights import load_model

__all__ = ["DEFAULT_MODEL", "PRECISIONS", "auto_tile", "derain", "derain_tensor", "resolve_device", "resolve_model"]

DEFAULT_MODEL = "sian-synth-light"  # our own weights, shipped in the package (works offline)

ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU; asking for an absent CUDA is a clear error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested, but this PyTorch build sees no CUDA device")
    return device


def resolve_model(model: nn.Module | str | os.PathLike | None, device: torch.device) -> nn.Module:
    if isinstance(model, nn.Module):
        return model  # used as given (device, layout, mode): derain never modifies the caller's module
    return load_model(DEFAULT_MODEL if model is None else model, device=device)


# Peak inference memory per pixel of a whole image (float32, CPU), from `sian bench` (2026-11-24:
# SIAN 969 MB at 481x321, 3046 MB at 1280x720 -> 2.7 kB per extra pixel); PReNet needs less.
BYTES_PER_PIXEL = 2700
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
DEFAULT_TILE, DEFAULT_OVERLAP = 512, 64


def auto_tile(height: int, width: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int | None:
    """A tile size that keeps inference within ``memory_budget`` bytes, or ``None`` if the image fits."""
    if height * width * BYTES_PER_PIXEL <= memory_budget:
        return None
    side = int((memory_budget / BYTES_PER_PIXEL) ** 0.5) // 64 * 64
    return max(128, min(DEFAULT_TILE, side))


@torch.inference_mode()
def derain_tensor(
    model: nn.Module, rainy: Tensor, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET, precision: str = "fp32",
) -> Tensor:  # fmt: skip
    """The final-stage output for a batch ``(B, 3, H, W)`` in [0, 1]; not clipped.

    ``tile`` derains in overlapping tiles of that size (cross-faded over ``overlap`` pixels). Without
    it, images too large for ``memory_budget`` bytes are tiled automatically (``None``: never).
    ``precision`` ``bf16`` (CPU or GPU) or ``fp16`` (GPU) runs the convolutions under autocast, ``auto``
    picks bf16 where the hardware runs it natively (:mod:`sian.precision`); the result is float32.
    Its PSNR cost: ``python scripts/precision_cost.py``.
    """
    device = getattr(model, "device", None) or next(model.parameters()).device  # ONNX backends have no parameters
    choice = resolve_precision(precision, device)
    min_size = getattr(model, "min_size", 1)

    def run(batch: Tensor) -> Tensor:
        height, width = batch.shape[-2:]
        if min(height, width) < min_size:  # tiny images: edge-replicate up to the model's minimum, crop back
            pad_h, pad_w = max(0, min_size - height), max(0, min_size - width)
            padded = torch.nn.functional.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
            return run(padded)[..., :height, :width]
        batch = batch.to(device, memory_format=torch.channels_last)
        if choice.precision == "fp32" or not isinstance(model, nn.Module):
            return model(batch, return_all=False)
        with autocast(choice, device):
            return model(batch, return_all=False).float()

    if tile is None and memory_budget is not None:
        tile = auto_tile(rainy.shape[-2], rainy.shape[-1], memory_budget)
    return run(rainy) if tile is None else tiled_apply(run, rainy, tile, overlap)


def derain(
    image: ImageLike,
    model: nn.Module | str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    quantization: Quantize = "round",
) -> ImageLike:
    """Derain one image.

    Args:
        image: a PIL image (any mode; converted to RGB), or an ``(H, W, 3)`` array, ``uint8`` or
            float in [0, 1].
        model: a loaded model (used as it is, on its own device, and not modified), a registered
            weights name or a weight file (default: our shipped ``sian-synth-light``).
        device: for a name or file: ``"cpu"``, ``"cuda"``, or ``None`` for CUDA when available.
        quantization: how float outputs become 8 bits for PIL and ``uint8`` results.

    Returns:
        The same kind as ``image``: a PIL RGB image, a ``uint8`` array, or a float32 array in [0, 1].

    Example:
        >>> from PIL import Image
        >>> from sian.demo import load_example
        >>> rainy, _ = load_example()
        >>> derain(Image.fromarray(rainy[:64, :64])).size
        (64, 64)
    """
    device = resolve_device(device)
    net = resolve_model(model, device)
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise TypeError(f"derain takes a PIL image or a numpy array, got {type(image).__name__}")
    output = derain_tensor(net, to_tensor(array))
    if isinstance(image, Image.Image):
        return Image.fromarray(quantize(output, quantization))
    if array.dtype == np.uint8:
        return quantize(output, quantization)
    return np.clip(from_tensor(output), 0.0, 1.0)
