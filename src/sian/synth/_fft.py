"""FFT convolution shared by the rain renderers: streak kernels reach 100x100 taps."""

from __future__ import annotations

import torch
from torch import Tensor


def fft_convolve(image: Tensor, kernel: Tensor) -> Tensor:
    """'Same'-size 2-D convolution ``(H, W) * (K, K)`` with zero padding (odd ``K``), clamped at 0."""
    h, w = image.shape
    k = kernel.shape[-1]
    size = (h + k - 1, w + k - 1)
    product = torch.fft.rfft2(image.double(), s=size) * torch.fft.rfft2(kernel.double(), s=size)
    full = torch.fft.irfft2(product, s=size)
    r = k // 2
    return full[r : r + h, r : r + w].float().clamp_(min=0.0)
