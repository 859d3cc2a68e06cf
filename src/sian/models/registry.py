"""One registry of model variants built from one builder (the timm pattern).

An *architecture* is a class (``"sian"``, ``"prenet"``) whose constructor arguments are its config;
a *variant* is a registered name for one config of an architecture (``"sian_baseline"`` ...).
Weight files store the architecture name and the full config, so they rebuild without the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .prenet_arch import PReNet
from .sian_arch import SIAN

__all__ = ["ARCHITECTURES", "Variant", "build_model", "create_model", "get_variant", "list_models"]

ARCHITECTURES: dict[str, type[nn.Module]] = {"sian": SIAN, "prenet": PReNet}


@dataclass(frozen=True)
class Variant:
    name: str
    arch: str
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_VARIANTS: dict[str, Variant] = {}


def register_variant(name: str, arch: str, description: str, **config: Any) -> Variant:
    if name in _VARIANTS:
        raise ValueError(f"model variant {name!r} is already registered")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}")
    _VARIANTS[name] = Variant(name, arch, dict(config), description)
    return _VARIANTS[name]


register_variant("sian", "sian", "SIAN as the authors released it: 6 stages, DoG attention, 3x3 Gaussians")
register_variant(
    "sian_paper", "sian", "SIAN with the paper's full Gaussian kernels (radius ~3 sigma)", kernel_mode="full"
)
register_variant("sian_baseline_lstm", "sian", "Table V 'Baseline+LSTM': 6 stages, no attention", attention=False)
register_variant(
    "sian_baseline", "sian", "Table V 'Baseline': 1 stage, no attention, no ConvLSTM",
    stages=1, attention=False, recurrent=False,
)  # fmt: skip
register_variant("prenet", "prenet", "PReNet (Ren et al., CVPR 2019): 6 stages, ConvLSTM, 5 residual blocks")


def list_models() -> list[str]:
    """Names of every registered variant."""
    return sorted(_VARIANTS)


def get_variant(name: str) -> Variant:
    try:
        return _VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown model variant {name!r}; known: {', '.join(list_models())}") from None


def build_model(arch: str, config: dict[str, Any]) -> nn.Module:
    """Build an architecture from its config (the constructor arguments)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**config)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered variant with fresh weights; keyword arguments override its config.

    Examples:
        >>> create_model("sian_baseline", channels=8).config["stages"]
        1
    """
    variant = get_variant(name)
    return build_model(variant.arch, {**variant.config, **overrides})
