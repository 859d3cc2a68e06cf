"""Paired rainy/clean datasets in the layouts found in the wild (``docs/protocol.md``).

=========  ==============================================================================
layout     files
=========  ==============================================================================
rain100l   ``norain-001.png`` (clean) beside ``rainy/rain-001.png`` (PReNet's Rain100L copy)
rain1400   ``rainy_image/901_1.jpg`` .. ``901_14.jpg`` and ``ground_truth/901.jpg`` (DDN)
rain12     one folder of ``001_in.png`` / ``001_GT.png``
generic    two folders with matching file names: input/target, rain/norain (Rain100H),
           rainy/gt, rainy/clean, rain/gt, inputs/targets, lq/gt
list       a text file, one ``RAINY CLEAN`` pair per line, paths relative to the file
=========  ==============================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..io import list_images

__all__ = ["LAYOUTS", "DatasetLayoutError", "Pair", "PairSet", "detect_layout", "find_pairs"]

LAYOUTS = ("auto", "rain100l", "rain1400", "rain12", "generic", "list")
GENERIC_FOLDERS = (
    ("input", "target"), ("rain", "norain"), ("rainy", "gt"), ("rainy", "clean"), ("rain", "gt"),
    ("inputs", "targets"), ("lq", "gt"), ("rainy", "norain"),
)  # fmt: skip


class DatasetLayoutError(ValueError):
    """A dataset folder whose layout is unknown or holds no pairs."""


@dataclass(frozen=True)
class Pair:
    name: str
    rainy: Path
    clean: Path


@dataclass
class PairSet:
    """The pairs found, plus what could not be paired (reported, never silently dropped)."""

    root: Path
    layout: str
    pairs: list[Pair]
    unpaired_rainy: list[Path] = field(default_factory=list)
    unpaired_clean: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)

    def problems(self) -> list[str]:
        lines = [f"no clean image for rainy {p}" for p in self.unpaired_rainy]
        lines += [f"no rainy image for clean {p}" for p in self.unpaired_clean]
        lines += [f"listed file does not exist: {p}" for p in self.missing]
        return lines


def _images(folder: Path) -> list[Path]:
    return list_images(folder)


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def detect_layout(root: str | Path) -> str:
    """Name the layout of ``root`` (see the module docstring), or raise :class:`DatasetLayoutError`."""
    root = Path(root)
    if not root.is_dir():
        if root.is_file():
            return "list"
        raise DatasetLayoutError(f"dataset folder not found: {root}")
    if (root / "rainy").is_dir() and any(root.glob("norain-*")):
        return "rain100l"
    if (root / "rainy_image").is_dir() and (root / "ground_truth").is_dir():
        return "rain1400"
    if any(p.stem.endswith("_in") for p in _images(root)) and any(p.stem.endswith("_GT") for p in _images(root)):
        return "rain12"
    if _generic_folders(root) is not None:
        return "generic"
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise DatasetLayoutError(
        f"cannot tell the layout of {root} (subfolders: {subfolders or 'none'}). Expected one of: "
        "rainy/ + norain-*.png (rain100l), rainy_image/ + ground_truth/ (rain1400), *_in/*_GT files "
        f"(rain12), or two folders among {[f'{a}/{b}' for a, b in GENERIC_FOLDERS]} (generic)."
    )


def _generic_folders(root: Path) -> tuple[Path, Path] | None:
    for rainy, clean in GENERIC_FOLDERS:
        if (root / rainy).is_dir() and (root / clean).is_dir():
            return root / rainy, root / clean
    return None


def _match(root: Path, layout: str, rainy: list[Path], clean_for: dict[str, Path], key) -> PairSet:
    pairs, unpaired, used = [], [], set()
    for path in rainy:
        clean = clean_for.get(key(path))
        if clean is None:
            unpaired.append(path)
        else:
            used.add(clean)
            pairs.append(Pair(path.stem, path, clean))
    unpaired_clean = sorted(set(clean_for.values()) - used)
    pairs.sort(key=lambda p: _natural_key(p.name))
    return PairSet(root, layout, pairs, unpaired, unpaired_clean)


def find_pairs(root: str | Path, layout: str = "auto") -> PairSet:
    """Pair every rainy image under ``root`` with its clean reference.

    Raises :class:`DatasetLayoutError` when the layout is unknown or nothing pairs; otherwise
    unpaired files are listed in the result's ``unpaired_*`` fields for the caller to report.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise DatasetLayoutError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "list":
        result = _pairs_from_list(root)
    elif layout == "rain100l":
        clean = {p.stem.removeprefix("norain-"): p for p in _images(root) if p.stem.startswith("norain-")}
        result = _match(root, layout, _images(root / "rainy"), clean, lambda p: p.stem.removeprefix("rain-"))
    elif layout == "rain1400":
        clean = {p.stem: p for p in _images(root / "ground_truth")}
        result = _match(root, layout, _images(root / "rainy_image"), clean, lambda p: p.stem.rsplit("_", 1)[0])
    elif layout == "rain12":
        files = _images(root)
        clean = {p.stem.removesuffix("_GT"): p for p in files if p.stem.endswith("_GT")}
        rainy = [p for p in files if p.stem.endswith("_in")]
        result = _match(root, layout, rainy, clean, lambda p: p.stem.removesuffix("_in"))
    else:
        folders = _generic_folders(root)
        if folders is None:
            raise DatasetLayoutError(f"{root} has none of the generic folder pairs {GENERIC_FOLDERS}")
        clean = {p.stem: p for p in _images(folders[1])}
        result = _match(root, layout, _images(folders[0]), clean, lambda p: p.stem)
    if not result.pairs:
        details = "; ".join(result.problems()[:5]) or "no image files"
        raise DatasetLayoutError(f"no rainy/clean pairs found in {root} (layout {layout}): {details}")
    return result


def _pairs_from_list(list_file: Path) -> PairSet:
    base = list_file.parent
    pairs, missing = [], []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DatasetLayoutError(f"{list_file}:{number}: expected 'RAINY CLEAN', got {line!r}")
        rainy, clean = (base / parts[0], base / parts[1])
        absent = [p for p in (rainy, clean) if not p.is_file()]
        if absent:
            missing.extend(absent)
        else:
            pairs.append(Pair(rainy.stem, rainy, clean))
    return PairSet(list_file, "list", pairs, missing=missing)
