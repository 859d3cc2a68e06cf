"""Benchmark metrics exactly as the deraining literature computes them (``docs/protocol.md``).

- the model output is clipped to [0, 1] and quantised to 8 bits: ``"round"`` (the SIAN release) or
  ``"floor"`` (PReNet's release truncates), an explicit option because the two differ by ~0.04 dB;
- luminance is MATLAB ``rgb2ycbcr``'s BT.601 studio Y, ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``
  from 8-bit RGB, left unrounded (not the full-range JPEG Y of OpenCV or kornia);
- PSNR is ``10 log10(255^2 / MSE)`` on Y with no border crop;
- SSIM is Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03), L = 255, population
  statistics, averaged over the valid region only. scikit-image computes exactly this with
  ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255``; its *defaults*
  (7x7 uniform window, sample covariance) do not, so the arguments are spelled out here.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from .io import QUANTIZE_MODES, Quantize, quantize  # the one conversion to 8 bits lives with the image I/O

__all__ = ["QUANTIZE_MODES", "Quantize", "psnr_y", "quantize", "rgb_to_y", "score_y", "ssim_y"]

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio luminance of 8-bit RGB as MATLAB ``rgb2ycbcr``, unrounded, in [16, 235].

    Args:
        rgb: ``(H, W, 3)`` array with values in 0..255 (uint8 or float).

    Returns:
        ``(H, W)`` float64 array.

    Examples:
        >>> rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)).round(3).tolist()
        [[235.0, 16.0]]
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    return 16.0 + rgb.astype(np.float64) @ _Y_WEIGHTS / 255.0


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")


def psnr_y(pred: np.ndarray, target: np.ndarray) -> float:
    """Y-channel PSNR in dB of two 8-bit RGB images ``(H, W, 3)``; ``inf`` for identical images."""
    _check_pair(pred, target)
    mse = float(np.mean((rgb_to_y(pred) - rgb_to_y(target)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim_y(pred: np.ndarray, target: np.ndarray) -> float:
    """Y-channel SSIM (Wang et al. 2004, the benchmark settings) of two 8-bit RGB images ``(H, W, 3)``."""
    _check_pair(pred, target)
    if min(pred.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {pred.shape[1]}x{pred.shape[0]}")
    return float(
        structural_similarity(
            rgb_to_y(pred),
            rgb_to_y(target),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255.0,
        )
    )


def score_y(image: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """``(Y-PSNR, Y-SSIM)`` of an 8-bit image against its clean reference: the one per-image score of
    ``sian eval``, validation, ``sian explain`` and ``sian demo``. SSIM is NaN below 11x11 pixels.

    Examples:
        >>> a = np.zeros((16, 16, 3), np.uint8)
        >>> psnr, ssim = score_y(a, a)
        >>> psnr, round(ssim, 6)
        (inf, 1.0)
    """
    if image.shape != clean.shape:
        raise ValueError(f"image {image.shape} and clean reference {clean.shape} differ in size")
    return psnr_y(image, clean), ssim_y(image, clean) if min(clean.shape[:2]) >= 11 else float("nan")
