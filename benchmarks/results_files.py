"""The committed results tables under docs/results/: where they are and how their rows are read.

Shared by the benchmarks that write them and by tools/ship_weights.py, which quotes them in model cards.
"""

from __future__ import annotations

import csv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The validation table of every model on the general and heavy validation sets (validate_models.py).
VALIDATION = REPO / "docs/results/validation.csv"
# Each of our training runs by the short name the tools take, and its folder under checkpoints/ (the name it
# ships as, unless SHIPS_AS or its shipping rule names it: raintrainh ships as sian-heavy or sian-rain100h-style).
RUN_NAMES = {"light": "sian-synth-light", "heavy": "sian-synth-heavy", "rain100l": "sian-rain100l-ours",
             "rain100l-2": "sian-rain100l-ours-2", "general": "sian-general", "streaks-heavy": "sian-streaks-heavy",
             "raintrainh": "sian-raintrainh"}  # fmt: skip
# The second Rain100L run continues the first and takes its name; the first run's weights ship on as a version.
SHIPS_AS = {"rain100l": "sian-rain100l-ours-v1", "rain100l-2": "sian-rain100l-ours"}
# Each model that replaced a shipped one, the validation set it was judged on, and the shipped model it replaced.
REPLACES = {"sian-general": ("configs/sian-general.yaml", "sian-synth-light"),
            "sian-streaks-heavy": ("configs/sian-streaks-heavy.yaml", "sian-synth-heavy"),
            "sian-heavy": ("configs/sian-raintrainh.yaml", "sian-streaks-heavy"),
            "sian-rain100l-ours": ("configs/rain100l-cpu-2.yaml", "sian-rain100l-ours-v1")}  # fmt: skip


def shipped_name(run: str) -> str:
    """The name a run (its short name) ships under, unless its shipping rule picks one."""
    return SHIPS_AS.get(run, RUN_NAMES[run])


def run_name(model: str) -> str:
    """A candidate given as its run's checkpoint (checkpoints/<run>/best.safetensors) goes by the run's name."""
    path = Path(model)
    return path.parent.name if path.suffix == ".safetensors" else model


def read_csv(path: Path) -> list[dict]:
    """The rows of a results CSV; none when it does not exist."""
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def measured_on(row: dict, sha256: str, tensors: str) -> bool:
    """Whether a results row was measured on these exact weights: by the file's hash or by the hash of its tensors
    (a run's checkpoint scored before shipping counts for its shipped copy, same tensors, other metadata)."""
    return row.get("sha256") == sha256 or row.get("tensors_sha256") == tensors


def full_set_rows(rows: list[dict]) -> list[dict]:
    """The validation rows over their config's full validation set: a ``--limit`` quick look does not count."""
    full_size: dict[str, int] = {}
    for r in rows:
        full_size[r["config"]] = max(full_size.get(r["config"], 0), int(r["images"]))
    return [r for r in rows if int(r["images"]) == full_size[r["config"]]]
