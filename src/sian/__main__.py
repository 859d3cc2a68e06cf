"""``python -m sian``: the same as the ``sian`` command (and what torchrun runs with ``-m sian``)."""

from .cli import app

app(prog_name="sian")
