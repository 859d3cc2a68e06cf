"""Synthetic rain: streak layers rendered onto clean images, or real rain layers added to them."""

from .classic import ClassicRain
from .dataset import SynthReport, write_synthetic_pairs
from .layers import PairLayerRain
from .rain import (
    PRESETS,
    RainParams,
    StreakLayer,
    add_rain,
    is_preset,
    rain_layer,
    sample_rain_params,
    streak_kernel,
    synthesize,
)
from .streaks import StreakBankRain

__all__ = [
    "PRESETS",
    "ClassicRain",
    "PairLayerRain",
    "RainParams",
    "StreakBankRain",
    "StreakLayer",
    "SynthReport",
    "add_rain",
    "is_preset",
    "rain_layer",
    "sample_rain_params",
    "streak_kernel",
    "synthesize",
    "write_synthetic_pairs",
]
