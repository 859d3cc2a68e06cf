"""Architectures: SIAN and the PReNet baseline, with one registry of named variants."""

from .layers import ConvLSTMCell, ResBlock
from .prenet_arch import PReNet
from .registry import ARCHITECTURES, Variant, build_model, create_model, get_variant, list_models
from .sian_arch import SIAN

__all__ = [
    "ARCHITECTURES",
    "SIAN",
    "ConvLSTMCell",
    "PReNet",
    "ResBlock",
    "Variant",
    "build_model",
    "create_model",
    "get_variant",
    "list_models",
]
