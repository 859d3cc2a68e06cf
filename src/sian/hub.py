"""Named weights: the registry (the authors' published files and our own shipped ones), the default model,
where weights are installed, and loading them.

The authors' files are never bundled: ``sian weights import`` (:mod:`sian.convert`) converts a copy the user
has; ``sian weights download`` (:func:`sian.convert.download_weights`) fetches and converts it, and
``torch.hub.load("<checkout>", "sian", source="local", pretrained=True)`` (``hubconf.py``) goes through
:func:`sian.convert.from_pretrained`.
User weights live in ``$SIAN_HOME/weights`` (default ``$XDG_CACHE_HOME/sian/weights``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .models import build_model, get_variant
from .weights import (
    WeightsError,
    WeightsNotFoundError,
    load_state_dict_checked,
    read_weights_file,
    sha256_file,
)

__all__ = [
    "DEFAULT_MODEL",
    "PRETRAINED_DIR",
    "WEIGHTS",
    "WeightsEntry",
    "WeightsStatus",
    "list_weights",
    "load_model",
    "resolve_weights",
    "weights_dir",
]

# What every command and function derains with when no model is named: ours, shipped in the package (works
# offline), chosen by a committed rule.
DEFAULT_MODEL = "sian-general"


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    variant: str
    sha256: str  # of the original file as published (bundled: of the shipped safetensors file)
    url: str
    dataset: str
    reference: str  # the published result these weights reproduce (bundled: our measured result)
    bundled: bool = False  # shipped inside the package (our own weights), not imported by the user

    @property
    def filename(self) -> str:
        return f"{self.name}.safetensors"


_SIAN_URL = "https://github.com/pangbo1997/RainRemoval/raw/7efca61/pretrained_models/{}.pth"
_PRENET_URL = "https://github.com/csdwren/PReNet/raw/6d908d1/logs/{}/PReNet6/net_latest.pth"

_AUTHORS: dict[str, WeightsEntry] = {
    e.name: e
    for e in [
        WeightsEntry("sian-rain100l", "sian",
                     "ab3894696b6c17c7a901ad4096dc4cdfaac835a00447ec64553df809ee143956",
                     _SIAN_URL.format("rain100l"), "Rain100L (also used for Rain12)", "38.80 / 0.984"),
        WeightsEntry("sian-rain100h", "sian",
                     "eafdb36506a4b087c1ccd8b6f73009284bf6daa223ecce28d713aa6472c91b91",
                     _SIAN_URL.format("rain100h"), "Rain100H", "30.33 / 0.909"),
        WeightsEntry("sian-rain1400", "sian",
                     "1812bdbf0ac17d5de70f80c93f5d29e31ad57dc4e105a7b09bd17a04b48c04b8",
                     _SIAN_URL.format("rain1400"), "Rain1400", "32.80 / 0.946"),
        WeightsEntry("prenet-rain100l", "prenet",
                     "cb9b743bb33cf6e5c56ba45f8ade93add46266dea9fa582e1934dc5eed942333",
                     _PRENET_URL.format("Rain100L"), "Rain100L", "37.45 / 0.979"),
        WeightsEntry("prenet-rain100h", "prenet",
                     "127c0098787c5272f1f8583f6c5202e7ef674f750cd145a1691912a6d9e96210",
                     _PRENET_URL.format("Rain100H"), "Rain100H", "30.11 / 0.905"),
        WeightsEntry("prenet-rain1400", "prenet",
                     "d5744dc2e35d73187a3f34936b3413884d293277073ffb78b961a78e65337879",
                     _PRENET_URL.format("Rain1400"), "Rain1400", "32.55 / 0.946"),
    ]
}  # fmt: skip

# Our own weights ship inside the package (src/sian/pretrained): the manifest, written by
# tools/ship_weights.py, lists each file with its hash and the figures of its model card.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def _bundled_entries() -> dict[str, WeightsEntry]:
    manifest = PRETRAINED_DIR / "manifest.json"
    if not manifest.is_file():
        return {}
    entries = {}
    for name, info in json.loads(manifest.read_text()).items():
        entries[name] = WeightsEntry(name, info["variant"], info["sha256"], "", info["dataset"], info["reference"],
                                     bundled=True)  # fmt: skip
    return entries


# Built once, from the authors' files and the package's manifest (nothing edits it after import).
WEIGHTS: dict[str, WeightsEntry] = {**_AUTHORS, **_bundled_entries()}


def weights_dir() -> Path:
    """Where imported weights live: ``$SIAN_HOME/weights``, else ``$XDG_CACHE_HOME/sian/weights``."""
    home = os.environ.get("SIAN_HOME")
    if not home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(cache, "sian")
    return Path(home) / "weights"


def _not_installed_message(entry: WeightsEntry, path: Path) -> str:
    return (
        f"weights {entry.name!r} are not installed (looked for {path}).\n"
        f"  Online:  sian weights download {entry.name}\n"
        f"  Offline: get the authors' file from {entry.url}\n"
        f"           (sha256 {entry.sha256}), then run\n"
        f"           sian weights import FILE --name {entry.name}"
    )


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """The safetensors file behind a registered name or a path, checked to exist."""
    text = str(name_or_path)
    if text in WEIGHTS:
        entry = WEIGHTS[text]
        path = (PRETRAINED_DIR if entry.bundled else weights_dir()) / entry.filename
        if not path.is_file():
            raise WeightsNotFoundError(_not_installed_message(entry, path))
        return path
    path = Path(text).expanduser()
    if path.exists():
        return path
    raise WeightsNotFoundError(
        f"{text!r} is neither a registered weights name ({', '.join(WEIGHTS)}) nor an existing file"
    )


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Build a model from named weights or a safetensors file, in eval mode on ``device``.

    Examples:
        >>> model = load_model("sian-rain100l")  # doctest: +SKIP
    """
    path = resolve_weights(name_or_path)
    arch, config, state, metadata = read_weights_file(path)
    entry = WEIGHTS.get(str(name_or_path))
    if entry is not None and entry.bundled:
        if sha256_file(path) != entry.sha256:
            raise WeightsError(f"{path} is damaged: its sha256 differs from the package manifest; reinstall sian")
    elif entry is not None and metadata.get("source_sha256") != entry.sha256:
        raise WeightsError(
            f"{path} does not hold the registered {entry.name!r} weights (source sha256 "
            f"{metadata.get('source_sha256')} != {entry.sha256}); re-import the authors' file."
        )
    model = build_model(arch, config)
    load_state_dict_checked(model, state, source=f"weights in {path}")
    # channels_last lets oneDNN/cuDNN skip a layout conversion around every convolution (measured:
    # SIAN 4.3 s -> 3.4 s at 481x321 on 2 CPU cores); it changes no value beyond float rounding.
    return model.to(device, memory_format=torch.channels_last).eval()


@dataclass(frozen=True)
class WeightsStatus:
    """One row of ``sian weights list``: a registered name, or a file the user imported under a name of their own."""

    name: str
    arch: str  # sian or prenet; "?" when the file cannot be read
    installed: str  # "bundled", "yes", "no", or "unreadable"
    reference: str  # the published (or, for ours, measured) result; "-" for the user's own
    dataset: str  # what it was trained on; for the user's own "(imported by you)" or why it cannot be read


def list_weights() -> list[WeightsStatus]:
    """Every registered weights name and whether it is installed, then the user's own files in :func:`weights_dir`.

    Examples:
        >>> rows = list_weights()
        >>> next(row for row in rows if row.name == DEFAULT_MODEL).installed
        'bundled'
    """
    folder = weights_dir()
    rows = []
    for entry in WEIGHTS.values():
        present = "bundled" if entry.bundled else "yes" if (folder / entry.filename).is_file() else "no"
        rows.append(WeightsStatus(entry.name, get_variant(entry.variant).arch, present, entry.reference, entry.dataset))
    others = sorted(p for p in folder.glob("*.safetensors") if p.stem not in WEIGHTS) if folder.is_dir() else []
    for path in others:
        try:
            arch = read_weights_file(path)[0]
        except (WeightsError, OSError, ValueError) as exc:  # one bad file must not hide the others
            rows.append(WeightsStatus(path.stem, "?", "unreadable", "-", str(exc)))
            continue
        rows.append(WeightsStatus(path.stem, arch, "yes", "-", "(imported by you)"))
    return rows
