"""Synthetic rain: streak layers rendered onto clean images, or real rain layers added to them."""

from .classic import ClassicRain
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
    "add_rain",
    "is_preset",
    "rain_layer",
    "sample_rain_params",
    "streak_kernel",
    "synthesize",
]
