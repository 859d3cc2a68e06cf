"""The bundled example: a Kodak photo with our synthetic rain and its clean reference (see assets/CREDITS.md)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .inference import DEFAULT_MODEL, Pipeline
from .io import read_image, write_image
from .metrics import score_y

__all__ = ["ASSETS_DIR", "DemoResult", "load_example", "run_demo"]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
EXAMPLE = "kodim16"


def load_example() -> tuple[np.ndarray, np.ndarray]:
    """The bundled ``(rainy, clean)`` pair as uint8 ``(H, W, 3)`` arrays.

    Examples:
        >>> rainy, clean = load_example()
        >>> rainy.shape == clean.shape == (500, 500, 3)
        True
    """
    return read_image(ASSETS_DIR / f"{EXAMPLE}_rainy.png"), read_image(ASSETS_DIR / f"{EXAMPLE}_clean.png")


@dataclass
class DemoResult:
    output: Path
    model: str
    input_psnr: float
    input_ssim: float
    psnr: float
    ssim: float
    seconds: float
    ran: str  # Pipeline.describe(): device, precision and why, compiled kernels


def run_demo(
    output_dir: str | os.PathLike, model: str = DEFAULT_MODEL, overwrite: bool = False, precision: str = "auto"
) -> DemoResult:
    """Derain the bundled example into ``output_dir`` on the CPU, in ``precision`` (``auto``: bf16 where the CPU
    multiplies it natively, else fp32), and score it against its clean reference (Y channel)."""
    rainy, clean = load_example()
    target = Path(output_dir) / f"{EXAMPLE}_derained.png"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (pass overwrite to replace it)")
    pipeline = Pipeline(model, device="cpu", precision=precision)
    start = time.perf_counter()
    derained = pipeline(rainy)
    seconds = time.perf_counter() - start
    write_image(target, derained, overwrite=overwrite)
    scores = (*score_y(rainy, clean), *score_y(derained, clean))
    return DemoResult(target, model, *scores, seconds, pipeline.describe())
