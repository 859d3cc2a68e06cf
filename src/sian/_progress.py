"""Progress bars that redraw on a terminal and stay sparse in log files.

tqdm redraws up to ten times a second; when stderr is a file (``nohup ... > log``, CI) each redraw is
another chunk of the file. Off a terminal the bar prints at most once every ``LOG_INTERVAL`` seconds.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm import tqdm

__all__ = ["LOG_INTERVAL", "BarSafeHandler", "progress_bar"]

LOG_INTERVAL = 60.0


def progress_bar(iterable: Any = None, *, disable: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr: live on a terminal, one line per ``LOG_INTERVAL`` seconds otherwise; none when
    ``disable`` (``sian --quiet`` passes it)."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        kwargs.setdefault("maxinterval", LOG_INTERVAL * 10)
    return tqdm(iterable, disable=disable, dynamic_ncols=True, file=sys.stderr, **kwargs)


class BarSafeHandler(logging.Handler):
    """Log lines on whatever ``sys.stderr`` is when they are written (test runners swap it), through
    ``tqdm.write``: a live progress bar is cleared and redrawn below the line instead of being cut by it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)
