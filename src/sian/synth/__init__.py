"""Synthetic rain: streak layers rendered onto clean images."""

from .classic import ClassicRain
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
