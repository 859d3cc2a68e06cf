"""Synthetic rain streaks on clean images, for training pairs when no real pairs exist.

The recipe follows the Photoshop-style pipeline behind Rain100L/H and Rain1400 (noise seeds, slight
blur, motion blur along an angle, levels, screen blend), rendered in one step per layer: each drop
seed is splatted with an *oriented streak kernel*, an anisotropic super-Gaussian that is ``length``
long (flat in the middle, fading at the ends), ``width`` wide and tilted by ``angle`` from vertical.
That one kernel is the composition of the recipe's small Gaussian blur and its motion blur with soft
ends; kornia's motion kernels are uniform lines without that taper, so the kernel is written here.

Heavy rain stacks several layers at different depths (near: long, wide, bright, sparse; far: short,
thin, faint, dense) with angles spread around one wind direction, and adds a haze veil (rain
accumulation) ``I * (1 - haze) + haze * light``.

Every parameter is drawn from the documented ranges of a preset with a seeded generator, so one seed
gives one rainy image, bit for bit, on any machine.

==========  ========  =====================  ======================  ==========================
preset      layers    density (seeds/pixel)  length (px)             other
==========  ========  =====================  ======================  ==========================
light       1         0.0006 - 0.004         12 - 45                 width 0.4 - 1.0, angle +-25,
                                                                     brightness 0.25 - 0.75, no haze
heavy       3 - 4     0.0005 - 0.0125        8 - 70 (by depth)       width 0.4 - 2.3, spread +-12
                      (far layers densest)                           around +-30, haze 0.05 - 0.35
==========  ========  =====================  ======================  ==========================

``classic`` is a second, independent renderer (:mod:`sian.synth.classic`): the Photoshop recipe taken
literally, used as a validation source that our streak kernel did not make. ``streaks``, ``streaks-light`` and
``streaks-heavy`` composite real streak layers (:mod:`sian.synth.streaks`); ``raintrainh`` adds real Rain100H
rain layers taken from RainTrainH pairs (:mod:`sian.synth.layers`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ._fft import fft_convolve
from .classic import ClassicRain, add_classic_rain, sample_classic_rain
from .layers import LAYER_PRESETS, PairLayerRain, add_layer_rain, sample_layer_rain
from .streaks import STREAK_PRESETS, StreakBankRain, add_streak_rain, sample_streak_rain

__all__ = [
    "PRESETS",
    "RainParams",
    "StreakLayer",
    "add_rain",
    "is_preset",
    "rain_layer",
    "sample_rain_params",
    "streak_kernel",
    "synthesize",
]

# streaks*: the real streak bank (sian.synth.streaks); raintrainh: real Rain100H rain layers (sian.synth.layers)
PRESETS = ("light", "heavy", "classic", *STREAK_PRESETS, *LAYER_PRESETS)


@dataclass(frozen=True)
class StreakLayer:
    """One family of streaks at one depth."""

    density: float  # probability that a pixel seeds a drop
    length: float  # streak length in pixels
    width: float  # streak half-width (Gaussian sigma across the streak) in pixels
    angle: float  # degrees from vertical; positive: the lower end lies left of the upper end
    brightness: float  # peak added intensity of an isolated streak, in [0, 1]
    brightness_spread: float = 0.4  # drops vary in brightness: uniform in [1 - spread, 1] x brightness


@dataclass(frozen=True)
class RainParams:
    layers: tuple[StreakLayer, ...]
    blend: Literal["screen", "add"] = "screen"
    haze: float = 0.0  # veil strength in [0, 1)
    haze_light: float = 0.9  # veil (atmospheric light) intensity
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel colour of the rain
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def streak_kernel(length: float, width: float, angle: float, sharpness: float = 4.0) -> Tensor:
    """Oriented streak kernel ``(K, K)``, peak 1: flat along ``length`` with soft ends, Gaussian across.

    ``exp(-|2u / length|^sharpness - v^2 / (2 width^2))`` with ``u`` along the streak and ``v`` across.

    Examples:
        >>> k = streak_kernel(20, 1.0, 0.0)
        >>> k.shape[0] % 2 == 1 and k.max().item() == 1.0 and k.sum(0).argmax().item() == k.shape[0] // 2
        True
    """
    theta = math.radians(angle)
    half = length / 2
    radius = math.ceil(half * 1.3 + 3 * width) + 1
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    u = y * math.cos(theta) - x * math.sin(theta)  # along the streak (vertical at angle 0)
    v = y * math.sin(theta) + x * math.cos(theta)  # across it
    kernel = torch.exp(-((u.abs() / max(half, 0.5)) ** sharpness) - v**2 / (2 * width**2))
    return (kernel / kernel.max()).float()


def is_preset(preset: str) -> bool:
    """Whether ``preset`` names a preset or a ``+``-joined mixture of presets (``"light+classic"``)."""
    return set(preset.split("+")) <= set(PRESETS)


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def sample_rain_params(
    preset: str, rng: np.random.Generator, held_out: bool = False
) -> RainParams | ClassicRain | StreakBankRain | PairLayerRain:
    """Draw rain parameters from a preset's documented ranges (see the module docstring).

    ``classic`` is the independent Photoshop-recipe renderer of :mod:`sian.synth.classic`; ``streaks``,
    ``streaks-light`` and ``streaks-heavy`` composite real streak layers (:mod:`sian.synth.streaks`),
    from the bank's training sets, or with ``held_out`` from its validation sets only; ``raintrainh`` adds the
    rain layers of RainTrainH pairs (:mod:`sian.synth.layers`), held-in pairs or, with ``held_out``, the held-out
    ones. A mixture such as ``"light+classic"`` draws one of its presets per image, uniformly.
    """
    if not is_preset(preset):
        raise ValueError(f"unknown rain preset {preset!r}; expected one of {PRESETS} or a mixture like light+classic")
    if "+" in preset:
        parts = preset.split("+")
        return sample_rain_params(parts[int(rng.integers(len(parts)))], rng, held_out)
    if preset in STREAK_PRESETS:
        return sample_streak_rain(preset, rng, held_out)
    if preset in LAYER_PRESETS:
        return sample_layer_rain(preset, rng, held_out)
    if preset == "classic":
        return sample_classic_rain(rng)
    if preset == "light":
        layer = StreakLayer(
            density=_uniform(rng, 0.0006, 0.004),
            length=_uniform(rng, 12, 45),
            width=_uniform(rng, 0.4, 1.0),
            angle=_uniform(rng, -25, 25),
            brightness=_uniform(rng, 0.25, 0.75),
        )
        return RainParams(layers=(layer,), blend="screen" if rng.random() < 0.7 else "add")
    # heavy: the only preset left after the checks above
    wind = _uniform(rng, -30, 30)
    count = int(rng.integers(3, 5))
    layers = []
    for depth in np.linspace(0.0, 1.0, count):  # 0 = far, 1 = near
        layers.append(
            StreakLayer(
                density=_uniform(rng, 0.003, 0.012) * (1 - 0.8 * depth) + 0.0005,
                length=_uniform(rng, 8, 25) + depth * _uniform(rng, 20, 45),
                width=_uniform(rng, 0.4, 0.8) + depth * _uniform(rng, 0.4, 1.5),
                angle=wind + _uniform(rng, -12, 12),
                brightness=_uniform(rng, 0.15, 0.35) + depth * _uniform(rng, 0.1, 0.4),
            )
        )
    return RainParams(
        layers=tuple(layers),
        blend="screen" if rng.random() < 0.7 else "add",
        haze=_uniform(rng, 0.05, 0.35),
        haze_light=_uniform(rng, 0.75, 1.0),
        tint=tuple(float(t) for t in rng.uniform(0.94, 1.0, size=3)),
    )


def rain_layer(height: int, width: int, params: RainParams, rng: np.random.Generator) -> Tensor:
    """The rain streak layer ``(1, 1, height, width)`` in [0, 1] for ``params``, drawn with ``rng``."""
    total = torch.zeros(1, 1, height, width)
    for layer in params.layers:
        seeds = rng.random((height, width))
        drops = np.where(seeds < layer.density, 1 - layer.brightness_spread * rng.random((height, width)), 0.0)
        kernel = streak_kernel(layer.length, layer.width, layer.angle)
        total = total + layer.brightness * fft_convolve(torch.from_numpy(drops).float(), kernel)[None, None]
    return total.clamp_(0.0, 1.0)


def add_rain(
    clean: Tensor, params: RainParams | ClassicRain | StreakBankRain | PairLayerRain, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """Render rain onto ``clean`` ``(3, H, W)`` in [0, 1] (classic parameters go to the classic renderer).

    The streaks are drawn on a canvas larger than the image by the longest streak, so streaks that
    start outside the image still cross into it, as they would on a full photo.

    Returns:
        ``(rainy, rain)``: the rainy image ``(3, H, W)`` in [0, 1] and the streak layer ``(1, H, W)``.
    """
    if isinstance(params, ClassicRain):
        return add_classic_rain(clean, params, rng)
    if isinstance(params, StreakBankRain):
        return add_streak_rain(clean, params)
    if isinstance(params, PairLayerRain):
        return add_layer_rain(clean, params)
    if clean.ndim != 3 or clean.shape[0] != 3:
        raise ValueError(f"expected a clean image (3, H, W), got shape {tuple(clean.shape)}")
    h, w = clean.shape[-2:]
    margin = int(max((layer.length for layer in params.layers), default=0)) + 4
    rain = rain_layer(h + 2 * margin, w + 2 * margin, params, rng)[0, :, margin : margin + h, margin : margin + w]
    tinted = rain * torch.tensor(params.tint).view(3, 1, 1)
    clean = clean.float()
    rainy = 1 - (1 - clean) * (1 - tinted) if params.blend == "screen" else clean + tinted
    if params.haze:
        rainy = rainy * (1 - params.haze) + params.haze * params.haze_light
    return rainy.clamp(0.0, 1.0), rain


def synthesize(
    clean: Tensor, preset: str, seed: int, held_out: bool = False
) -> tuple[Tensor, RainParams | ClassicRain | StreakBankRain | PairLayerRain]:
    """Rainy version of ``clean`` ``(3, H, W)`` for one ``seed``: the same seed gives the same image.

    Examples:
        >>> clean = torch.rand(3, 32, 40)
        >>> a, _ = synthesize(clean, "light", seed=7)
        >>> b, _ = synthesize(clean, "light", seed=7)
        >>> torch.equal(a, b) and a.shape == clean.shape
        True
    """
    rng = np.random.default_rng(seed)
    params = sample_rain_params(preset, rng, held_out)
    return add_rain(clean, params, rng)[0], params
