"""A second, independent rain renderer: the classic Photoshop recipe, step by step.

Our ``light``/``heavy`` presets splat each drop with one analytic streak kernel. This renderer follows
the layer recipe used for the Rain100 and Rain1400 benchmarks literally, with different building blocks
at every step, so that a model selected on its rain is not selected for our own renderer's quirks:

1. Gaussian noise over a canvas larger than the image (streaks enter from outside the frame);
2. levels on the noise: only the brightest ``density`` share of pixels survives, graded by how far
   above the cut they are (drops of different size and brightness);
3. a Gaussian blur of ``seed_blur`` pixels (drop width);
4. a uniform motion blur ``length`` pixels long at ``angle`` degrees from vertical (kornia's box line
   kernel: hard ends, not the tapered ends of :func:`sian.synth.rain.streak_kernel`);
5. levels again: the layer's 99.5th percentile is mapped to ``brightness``, the rest clipped at 1, so
   crossing streaks saturate;
6. screen blend onto the image.

Ranges (drawn with a seeded generator, one seed one image):

============  ==============  =============  ============  ==============
density       seed_blur (px)  length (px)    angle (deg)   brightness
============  ==============  =============  ============  ==============
0.004 - 0.03  0.5 - 1.5       15 - 55 (odd)  -30 - 30      0.45 - 0.95
============  ==============  =============  ============  ==============

The ranges were fixed from the recipe's usual settings before any model was scored on this rain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import kornia
import numpy as np
import torch
from torch import Tensor

from ._fft import fft_convolve

__all__ = ["ClassicRain", "add_classic_rain", "classic_rain_layer", "sample_classic_rain"]


@dataclass(frozen=True)
class ClassicRain:
    """Parameters of one classic rain layer (see the module docstring)."""

    density: float
    seed_blur: float
    length: int
    angle: float
    brightness: float

    def to_dict(self) -> dict:
        return {"renderer": "classic", **asdict(self)}


def sample_classic_rain(rng: np.random.Generator) -> ClassicRain:
    """Draw classic rain parameters from the documented ranges."""
    return ClassicRain(
        density=float(rng.uniform(0.004, 0.03)),
        seed_blur=float(rng.uniform(0.5, 1.5)),
        length=int(rng.integers(7, 28)) * 2 + 1,
        angle=float(rng.uniform(-30, 30)),
        brightness=float(rng.uniform(0.45, 0.95)),
    )


def classic_rain_layer(height: int, width: int, params: ClassicRain, rng: np.random.Generator) -> Tensor:
    """The rain layer ``(1, 1, height, width)`` in [0, 1] of ``params``, drawn with ``rng``."""
    noise = rng.standard_normal((height, width))
    cut = np.quantile(noise, 1 - params.density)
    seeds = torch.from_numpy(np.clip(noise - cut, 0, None)).float()[None, None]
    radius = max(1, int(np.ceil(3 * params.seed_blur)))
    drops = kornia.filters.gaussian_blur2d(seeds, (2 * radius + 1,) * 2, (params.seed_blur,) * 2)
    # kornia measures its angle counter-clockwise from horizontal; ours is streak_kernel's, from vertical.
    line = kornia.filters.get_motion_kernel2d(params.length, 90.0 - params.angle, 0.0)[0]
    streaks = fft_convolve(drops[0, 0], line)
    white = torch.quantile(streaks.flatten()[:: max(1, streaks.numel() // 1_000_000)], 0.995).clamp(min=1e-6)
    return (streaks * (params.brightness / white)).clamp(0.0, 1.0)[None, None]


def add_classic_rain(clean: Tensor, params: ClassicRain, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Screen-blend classic rain onto ``clean`` ``(3, H, W)``; returns ``(rainy, rain)`` like ``add_rain``."""
    if clean.ndim != 3 or clean.shape[0] != 3:
        raise ValueError(f"expected a clean image (3, H, W), got shape {tuple(clean.shape)}")
    h, w = clean.shape[-2:]
    margin = params.length + 4
    canvas = classic_rain_layer(h + 2 * margin, w + 2 * margin, params, rng)
    rain = canvas[0, :, margin : margin + h, margin : margin + w]
    rainy = 1 - (1 - clean.float()) * (1 - rain)
    return rainy.clamp(0.0, 1.0), rain
