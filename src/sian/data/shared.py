"""Where the project's shared data lives: ``$SIAN_SHARED``, else a default (``../shared``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_folder"]


def shared_folder(default: str | Path = "../shared") -> Path:
    """The shared data folder (datasets, the authors' weights): ``$SIAN_SHARED`` when set, else ``default``.

    The library's default is relative to the working directory; the repository's scripts pass the folder
    beside their checkout, so they work from any directory.

    Examples:
        >>> str(shared_folder("/data/shared")) == (os.environ.get("SIAN_SHARED") or "/data/shared")
        True
    """
    return Path(os.environ.get("SIAN_SHARED") or default)
