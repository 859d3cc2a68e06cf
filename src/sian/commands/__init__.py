"""The subcommands of ``sian``, one module per group; :mod:`sian.cli` assembles them.

Each parses its arguments, calls the library, and prints what the library returns.
"""

from . import evaluation, images, service, training, weights

__all__ = ["evaluation", "images", "service", "training", "weights"]
