"""torch.hub entry points: ``torch.hub.load("<this checkout>", "sian", source="local", pretrained=True)``.

Works from a checkout without installing the package (``src/`` is put on the path). ``pretrained``
loads named weights (default: the package's default model, shipped inside it, so this works offline);
the authors' weights load by name once imported with ``sian weights import``.
"""

import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

dependencies = ["torch", "kornia", "safetensors", "numpy", "PIL"]


def sian(pretrained: bool = True, weights: str | None = None, device: str = "cpu", **config):
    """SIAN in eval mode: with ``pretrained``, the named ``weights`` (default: the default model);
    without, a fresh release-configuration SIAN (``config`` overrides its constructor arguments)."""
    from sian.convert import from_pretrained
    from sian.models import create_model

    if pretrained:
        return from_pretrained(weights, device=device)
    return create_model("sian", **config).to(device).eval()


def prenet(pretrained: bool = False, weights: str = "prenet-rain100l", device: str = "cpu", **config):
    """The PReNet baseline: with ``pretrained``, the authors' weights (imported or downloaded)."""
    from sian.convert import from_pretrained
    from sian.models import create_model

    if pretrained:
        return from_pretrained(weights, device=device)
    return create_model("prenet", **config).to(device).eval()
