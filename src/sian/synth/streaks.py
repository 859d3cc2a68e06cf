"""Rain from a bank of real, photometrically rendered streak layers (Garg & Nayar's streak database).

Our other renderers draw streaks from formulas; this one composites real streak appearance. Per image,
``1 + round(11 * amount**2)`` layers are drawn from the bank (``amount`` in [0, 1]: light, one sparse layer,
to heavy, twelve dense and bright ones), and each is placed at the image's full size before any crop:

1. a random window of a bank image, ``1 / scale`` of the target's size (``scale`` 0.7 - 1.6: nearer or
   farther rain), resized to the target (a window larger than the bank image is shrunk to fit);
2. a small rotation (-12 to 12 degrees) and a horizontal flip half the time;
3. levels: values under ``cut`` (0.35 for light rain down to 0 for heavy) are dropped, which thins the
   layer to its brighter streaks;
4. an optional slight Gaussian blur (sigma up to 1 px: depth of field);
5. brightness (x0.6 - 1.4 for light rain, rising to x1.0 - 2.0 for heavy) and opacity (0.5 - 1.0, from
   0.7 for heavy).

Calibration (``amount**2``: the light end stays sparse while the heavy end gets dense): over held-out
backgrounds and held-out streak sets, ``streaks-light`` rain leaves the input at 26-63 dB Y-PSNR and
``streaks-heavy`` at 14.5-23 dB (mean 17.8), the band the heavy model is judged on.

The layers combine by screen blend, ``R = 1 - prod(1 - r_i)``, and so does the result with the clean
image: ``1 - (1 - B)(1 - R)``.

The bank's SETS listed in ``streaks_val_sets.txt`` (file ``N-V.png``: set ``N``, variant ``V``) are held
out: training draws only from the others, validation (``held_out=True``) only from them, so no variant of
a validation streak set is ever trained on. The bank is found at ``$SIAN_STREAK_BANK``, else
``$SIAN_SHARED/data/streaks_garg_nayar``, else ``../shared/data/streaks_garg_nayar``; it is third-party
data and never shipped in the package.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.shared import shared_folder

__all__ = [
    "STREAK_PRESETS",
    "StreakBankRain",
    "StreakPlacement",
    "add_streak_rain",
    "held_out_sets",
    "sample_streak_rain",
    "streak_bank",
    "streak_rain_layer",
]

# Preset name: the range of `amount` it draws from (light to heavy rain).
STREAK_PRESETS = {"streaks": (0.0, 1.0), "streaks-light": (0.0, 0.3), "streaks-heavy": (0.75, 1.0)}
_SPLIT_FILE = Path(__file__).with_name("streaks_val_sets.txt")


@dataclass(frozen=True)
class StreakPlacement:
    """How one bank layer is placed (see the module docstring)."""

    file: str  # bank file name, N-V.png
    window_y: float  # top-left corner of the window, as fractions of the free room
    window_x: float
    scale: float
    angle: float
    flip: bool
    cut: float
    blur: float
    brightness: float
    opacity: float


@dataclass(frozen=True)
class StreakBankRain:
    amount: float
    layers: tuple[StreakPlacement, ...]

    def to_dict(self) -> dict:
        return {"renderer": "streaks", **asdict(self)}


def streak_bank_dir() -> Path:
    explicit = os.environ.get("SIAN_STREAK_BANK")
    if explicit:
        return Path(explicit)
    return shared_folder() / "data" / "streaks_garg_nayar"


@functools.lru_cache(maxsize=1)
def held_out_sets() -> frozenset[int]:
    """The streak set numbers reserved for validation (a committed, fixed split)."""
    lines = (line.split("#", 1)[0].strip() for line in _SPLIT_FILE.read_text().splitlines())
    return frozenset(int(line) for line in lines if line)


def _set_of(name: str) -> int:
    return int(name.split("-", 1)[0])


@functools.lru_cache(maxsize=4)
def streak_bank(folder: str | None = None, held_out: bool = False) -> tuple[str, ...]:
    """The bank's file names of one side of the split (training, or ``held_out`` validation), sorted."""
    root = Path(folder) if folder else streak_bank_dir()
    if not root.is_dir():
        raise FileNotFoundError(
            f"streak bank not found at {root}: set SIAN_STREAK_BANK (or SIAN_SHARED) to the folder of "
            "Garg & Nayar streak layers (N-V.png)"
        )
    reserved = held_out_sets()
    names = sorted(p.name for p in root.glob("*-*.png") if (_set_of(p.name) in reserved) == held_out)
    if not names:
        raise FileNotFoundError(f"no {'held-out' if held_out else 'training'} streak layers (N-V.png) in {root}")
    return tuple(names)


@functools.lru_cache(maxsize=600)
def _load(folder: str, name: str) -> Tensor:
    from ..io import read_image

    return torch.from_numpy(read_image(Path(folder) / name)[..., 0].astype(np.float32) / 255.0)


def sample_streak_rain(preset: str, rng: np.random.Generator, held_out: bool = False) -> StreakBankRain:
    """Draw streak-bank rain of ``preset`` (:data:`STREAK_PRESETS`) from one side of the split."""
    low, high = STREAK_PRESETS[preset]
    names = streak_bank(None, held_out)
    amount = float(rng.uniform(low, high))
    dense = amount**2  # heavy rain: more, brighter, more opaque layers (see the calibration above)
    layers = []
    for _ in range(1 + round(11 * dense)):
        layers.append(StreakPlacement(
            file=names[int(rng.integers(len(names)))], window_y=float(rng.random()), window_x=float(rng.random()),
            scale=float(rng.uniform(0.7, 1.6)), angle=float(rng.uniform(-12, 12)), flip=bool(rng.random() < 0.5),
            cut=0.35 * (1 - amount) * float(rng.uniform(0.7, 1.0)),
            blur=float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 0.0,
            brightness=float(rng.uniform(0.6 + 0.4 * dense, 1.4 + 0.6 * dense)),
            opacity=float(rng.uniform(0.5 + 0.2 * dense, 1.0)),
        ))  # fmt: skip
    return StreakBankRain(amount, tuple(layers))


def _place(layer: Tensor, height: int, width: int, p: StreakPlacement) -> Tensor:
    bank_h, bank_w = layer.shape
    window_h, window_w = height / p.scale, width / p.scale
    fit = min(1.0, bank_h / window_h, bank_w / window_w)  # a window larger than the bank image shrinks to fit
    window_h, window_w = max(1, int(window_h * fit)), max(1, int(window_w * fit))
    y = int(p.window_y * (bank_h - window_h))
    x = int(p.window_x * (bank_w - window_w))
    window = layer[y : y + window_h, x : x + window_w][None, None]
    placed = F.interpolate(window, size=(height, width), mode="bilinear", align_corners=False)
    if p.angle:
        placed = kornia.geometry.transform.rotate(placed, torch.tensor([p.angle]))
    if p.flip:
        placed = placed.flip(-1)
    placed = ((placed - p.cut) / (1 - p.cut)).clamp(0.0, 1.0)
    if p.blur > 0.2:
        radius = max(1, int(np.ceil(3 * p.blur)))
        placed = kornia.filters.gaussian_blur2d(placed, (2 * radius + 1,) * 2, (p.blur, p.blur))
    return (placed * p.brightness).clamp(0.0, 1.0) * p.opacity


def streak_rain_layer(height: int, width: int, params: StreakBankRain, folder: str | None = None) -> Tensor:
    """The rain layer ``(1, 1, height, width)`` in [0, 1]: the placed bank layers, screen-blended."""
    root = str(Path(folder) if folder else streak_bank_dir())
    clear = torch.ones(1, 1, height, width)
    for placement in params.layers:
        clear = clear * (1 - _place(_load(root, placement.file), height, width, placement))
    return 1 - clear


def add_streak_rain(clean: Tensor, params: StreakBankRain) -> tuple[Tensor, Tensor]:
    """Screen-blend streak-bank rain onto ``clean`` ``(3, H, W)``; returns ``(rainy, rain)`` like ``add_rain``."""
    if clean.ndim != 3 or clean.shape[0] != 3:
        raise ValueError(f"expected a clean image (3, H, W), got shape {tuple(clean.shape)}")
    rain = streak_rain_layer(*clean.shape[-2:], params)[0]
    return (1 - (1 - clean.float()) * (1 - rain)).clamp(0.0, 1.0), rain
