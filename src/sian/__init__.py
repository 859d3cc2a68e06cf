"""sian: single-image deraining with the Scale-space Invariant Attention Network.

Examples:
    >>> import sian
    >>> model = sian.load_model("sian-rain100l")          # doctest: +SKIP
    >>> clean = sian.derain(rainy_pil_image, model=model)  # doctest: +SKIP
"""

from ._allocator import keep_freed_memory
from .hub import WEIGHTS, load_model
from .inference import DEFAULT_MODEL, Pipeline, derain
from .models import create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "WEIGHTS",
    "Pipeline",
    "__version__",
    "create_model",
    "derain",
    "keep_freed_memory",
    "list_models",
    "load_model",
]
