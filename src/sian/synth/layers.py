"""Rain100H's rain, from the rain layers of real RainTrainH pairs (preset ``raintrainh``).

A RainTrainH pair (Rain100H's training set) is a clean photo and the same photo with gray rain added and
clipped at 255: ``rainy - clean`` is non-negative everywhere and equal in the three channels wherever none is
clipped, so its largest channel is the rain layer exactly, except where all three channels are clipped: there
it is only a lower bound. Such a pixel whose lower bound is itself bright (128 levels or more) is a saturated
streak core, and stays saturated in a composite (Rain100H's brightest streaks saturate whatever lies under
them); elsewhere (a clipped bright sky, say) the composite adds the lower bound, a little less rain than the
pair had.

Per image, one layer, or two added together with probability 0.3 (denser rain), each placed at the target's
size like the streak bank's layers:

1. a random window of a pair's layer, ``1 / scale`` of the target's size (``scale`` 0.8 - 1.25), resized to
   the target (a window larger than the layer is shrunk to fit);
2. a horizontal flip half the time;
3. intensity: the layer times a gain of 0.8 - 1.2.

The composite is ``min(1, clean + sum of the placed layers)`` in each channel, set to 1 on placed saturated
streak cores.

The pairs listed in ``raintrainh_val_pairs.txt`` are held out: training draws only from the others,
validation (``held_out=True``) only from them. The pairs are found at ``$SIAN_RAINTRAINH``, else
``$SIAN_SHARED/data/RainTrainH_12``, else ``../shared/data/RainTrainH_12``: third-party data, never shipped
in the package.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import DatasetLayoutError, find_pairs
from ..data.shared import shared_folder
from ..io import read_image

__all__ = [
    "LAYER_PRESETS",
    "LayerPlacement",
    "PairLayerRain",
    "add_layer_rain",
    "held_out_pairs",
    "layer_pairs",
    "rain_layers_dir",
    "sample_layer_rain",
]

LAYER_PRESETS = ("raintrainh",)
_SPLIT_FILE = Path(__file__).with_name("raintrainh_val_pairs.txt")
STACK_PROBABILITY = 0.3
# A clipped pixel counts as a saturated streak core when the rain there was at least this bright (8-bit levels)
# even as a lower bound; a clipped pixel of an already bright background (sky) tells almost nothing of its rain.
SATURATED_CORE = 128


@dataclass(frozen=True)
class LayerPlacement:
    """How one pair's rain layer is placed (see the module docstring)."""

    pair: str  # the pair's name (its rainy file's stem)
    window_y: float  # top-left corner of the window, as fractions of the free room
    window_x: float
    scale: float
    flip: bool
    gain: float


@dataclass(frozen=True)
class PairLayerRain:
    layers: tuple[LayerPlacement, ...]

    def to_dict(self) -> dict:
        return {"renderer": "raintrainh", **asdict(self)}


def rain_layers_dir() -> Path:
    explicit = os.environ.get("SIAN_RAINTRAINH")
    if explicit:
        return Path(explicit)
    return shared_folder() / "data" / "RainTrainH_12"


@functools.lru_cache(maxsize=1)
def held_out_pairs() -> frozenset[str]:
    """The pair names reserved for validation (a committed, fixed draw)."""
    lines = (line.split("#", 1)[0].strip() for line in _SPLIT_FILE.read_text().splitlines())
    return frozenset(line for line in lines if line)


@functools.lru_cache(maxsize=4)
def _pairs(folder: str) -> dict:
    root = Path(folder)
    try:
        return {pair.name: pair for pair in find_pairs(root).pairs}
    except (DatasetLayoutError, FileNotFoundError):
        raise FileNotFoundError(
            f"RainTrainH pairs not found at {root}: set SIAN_RAINTRAINH (or SIAN_SHARED) to a folder of rain/ and "
            "norain/ pairs from Rain100H's training set"
        ) from None


def layer_pairs(folder: str | None = None, held_out: bool = False) -> tuple[str, ...]:
    """The pair names of one side of the split (training, or ``held_out`` validation), sorted."""
    root = str(Path(folder) if folder else rain_layers_dir())
    reserved = held_out_pairs()
    names = sorted(name for name in _pairs(root) if (name in reserved) == held_out)
    if not names:
        raise FileNotFoundError(f"no {'held-out' if held_out else 'training'} RainTrainH pairs in {root}")
    return tuple(names)


@functools.lru_cache(maxsize=16)
def _layer(folder: str, name: str) -> tuple[Tensor, Tensor]:
    """A pair's rain layer ``(1, H, W)`` in [0, 1] and its saturated streak cores ``(1, H, W)`` (see the module
    docstring)."""
    pair = _pairs(folder)[name]
    rainy, clean = read_image(pair.rainy).astype(np.int16), read_image(pair.clean).astype(np.int16)
    # Rain100H's rain is gray (the three channels rise by the same amount wherever none is clipped), so the
    # largest channel difference is the rain exactly unless all three are clipped; then it is a lower bound.
    rain = np.clip(rainy - clean, 0, 255).max(axis=-1)
    cores = (rainy >= 255).all(axis=-1) & (rain >= SATURATED_CORE)
    layer = torch.from_numpy(rain.astype(np.float32) / 255.0)[None]
    return layer, torch.from_numpy(cores.astype(np.float32))[None]


def sample_layer_rain(preset: str, rng: np.random.Generator, held_out: bool = False) -> PairLayerRain:
    """Draw ``raintrainh`` rain from one side of the split of the RainTrainH pairs."""
    if preset not in LAYER_PRESETS:
        raise ValueError(f"unknown layer preset {preset!r}; expected one of {LAYER_PRESETS}")
    names = layer_pairs(None, held_out)
    count = 2 if rng.random() < STACK_PROBABILITY else 1
    layers = []
    for _ in range(count):
        layers.append(LayerPlacement(
            pair=names[int(rng.integers(len(names)))], window_y=float(rng.random()), window_x=float(rng.random()),
            scale=float(rng.uniform(0.8, 1.25)), flip=bool(rng.random() < 0.5), gain=float(rng.uniform(0.8, 1.2)),
        ))  # fmt: skip
    return PairLayerRain(tuple(layers))


def _place(image: Tensor, height: int, width: int, p: LayerPlacement) -> Tensor:
    _, layer_h, layer_w = image.shape
    window_h, window_w = height / p.scale, width / p.scale
    fit = min(1.0, layer_h / window_h, layer_w / window_w)  # a window larger than the layer shrinks to fit
    window_h, window_w = max(1, int(window_h * fit)), max(1, int(window_w * fit))
    y = int(p.window_y * (layer_h - window_h))
    x = int(p.window_x * (layer_w - window_w))
    window = image[None, :, y : y + window_h, x : x + window_w]
    placed = F.interpolate(window, size=(height, width), mode="bilinear", align_corners=False)[0]
    return placed.flip(-1) if p.flip else placed


def add_layer_rain(clean: Tensor, params: PairLayerRain, folder: str | None = None) -> tuple[Tensor, Tensor]:
    """Add RainTrainH rain layers to ``clean`` ``(3, H, W)``; returns ``(rainy, rain)`` like ``add_rain``.

    ``rain`` is the added gray layer ``(1, H, W)`` before clipping, saturated streak cores at 1.
    """
    if clean.ndim != 3 or clean.shape[0] != 3:
        raise ValueError(f"expected a clean image (3, H, W), got shape {tuple(clean.shape)}")
    root = str(Path(folder) if folder else rain_layers_dir())
    height, width = clean.shape[-2:]
    rain = torch.zeros(1, height, width)
    saturated = torch.zeros(1, height, width, dtype=torch.bool)
    for placement in params.layers:
        layer, mask = _layer(root, placement.pair)
        rain += _place(layer, height, width, placement) * placement.gain
        saturated |= _place(mask, height, width, placement) >= 0.5
    rain = rain.masked_fill(saturated, 1.0)
    rainy = (clean.float() + rain).clamp(0.0, 1.0).masked_fill(saturated, 1.0)
    return rainy, rain
