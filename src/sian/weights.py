"""Named weights: a registry, conversion of the authors' checkpoints to safetensors, and loading.

Weight files are safetensors whose metadata carry the architecture and its full config, so a file
rebuilds its model without guessing. The authors' checkpoints are legacy ``torch.save`` pickles; they
are read once, by :func:`import_weights`, with ``torch.load(weights_only=True)`` (a restricted
unpickler that only rebuilds tensors), converted to our module names and stored in the user weights
directory (``$SIAN_HOME/weights``, default ``$XDG_CACHE_HOME/sian/weights``). Nothing is ever
unpickled with arbitrary code execution unless the caller passes ``trust_pickle=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ._atomic import atomic_path
from .models import build_model, get_variant

__all__ = [
    "WEIGHTS",
    "WeightsEntry",
    "WeightsError",
    "WeightsNotFoundError",
    "convert_authors_state_dict",
    "download_weights",
    "import_weights",
    "load_model",
    "load_state_dict_checked",
    "read_weights_file",
    "resolve_weights",
    "save_weights",
    "sha256_file",
    "weights_dir",
]

FORMAT = "sian-weights/1"


class WeightsError(RuntimeError):
    """A weight file that cannot be used: wrong hash, wrong architecture, unreadable."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """Named weights that are not installed on this machine."""


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

WEIGHTS: dict[str, WeightsEntry] = {
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
# scripts/ship_weights.py, lists each file with its hash and the figures of its model card.
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


WEIGHTS.update(_bundled_entries())


def weights_dir() -> Path:
    """Where imported weights live: ``$SIAN_HOME/weights``, else ``$XDG_CACHE_HOME/sian/weights``."""
    home = os.environ.get("SIAN_HOME")
    if not home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(cache, "sian")
    return Path(home) / "weights"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- conversion of the authors' key names -------------------------------------------------------

# The release's index j of scale_conv/lstm works at 1/4 (j=0), 1/2, full resolution; our level o is
# octave o (0 = full), so level = 2 - j. up_conv.0 fuses 1/4 into 1/2, which is our fusions.1.
_SIAN_GATES = ("i", "f", "j", "o")  # ConvLSTMCell order: input, forget, candidate, output
_PRENET_GATES = ("i", "f", "g", "o")


def _pop(sd: dict[str, Tensor], key: str) -> Tensor:
    try:
        return sd.pop(key)
    except KeyError:
        raise WeightsError(f"authors' checkpoint lacks the tensor {key!r}") from None


def _convert_sian(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    levels = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("body.scale_conv."))
    for part in ("weight", "bias"):
        out[f"input_conv.{part}"] = _pop(sd, f"body.tran_conv.{part}")
        for j in range(levels):
            level = f"levels.{levels - 1 - j}"
            for ours, theirs in (
                ("feature_conv", "conv_f"),
                ("attention_conv", "conv_m"),
                ("refine_conv", "conv_z"),
            ):
                key = f"body.scale_conv.{j}.{theirs}.0.{part}"
                if key in sd or theirs != "conv_m":  # attention-free checkpoints have no conv_m
                    out[f"{level}.{ours}.{part}"] = _pop(sd, key)
        for j in range(levels - 1):
            out[f"fusions.{levels - 2 - j}.conv.{part}"] = _pop(sd, f"body.up_conv.{j}.conv_m.0.{part}")
        # The head is `head_blocks` residual blocks (body_end.N.body.*) then one convolution (body_end.<N>.*).
        head_blocks = len({k.split(".")[1] for k in sd if k.startswith("body_end.") and ".body." in k})
        for block in range(head_blocks):
            for conv, index in (("conv1", 0), ("conv2", 2)):
                out[f"rain_head.{block}.{conv}.{part}"] = _pop(sd, f"body_end.{block}.body.{index}.{part}")
        out[f"rain_head.{head_blocks}.{part}"] = _pop(sd, f"body_end.{head_blocks}.{part}")
        # The release defines body.conv_m but its forward pass never uses it: drop it.
        for index in (0, 2):
            sd.pop(f"body.conv_m.{index}.{part}", None)
    for j in range(levels):
        prefix = f"body.lstm.{j}"
        if f"{prefix}.conv_xi.weight" not in sd:
            continue
        weights = [torch.cat([_pop(sd, f"{prefix}.conv_x{g}.weight"), _pop(sd, f"{prefix}.conv_h{g}.weight")], 1)
                   for g in _SIAN_GATES]  # fmt: skip
        out[f"levels.{levels - 1 - j}.lstm.gates.weight"] = torch.cat(weights, 0)
        out[f"levels.{levels - 1 - j}.lstm.gates.bias"] = torch.cat(
            [_pop(sd, f"{prefix}.conv_x{g}.bias") for g in _SIAN_GATES]
        )
    return out


def _convert_prenet(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    blocks = sorted({int(k.split(".")[0][len("res_conv") :]) for k in sd if k.startswith("res_conv")})
    for part in ("weight", "bias"):
        out[f"input_conv.{part}"] = _pop(sd, f"conv0.0.{part}")
        for index, block in enumerate(blocks):
            out[f"res_blocks.{index}.conv1.{part}"] = _pop(sd, f"res_conv{block}.0.{part}")
            out[f"res_blocks.{index}.conv2.{part}"] = _pop(sd, f"res_conv{block}.2.{part}")
        if f"conv_i.0.{part}" in sd:
            out[f"lstm.gates.{part}"] = torch.cat([_pop(sd, f"conv_{g}.0.{part}") for g in _PRENET_GATES])
        out[f"output_conv.{part}"] = _pop(sd, f"conv.0.{part}")
    return out


def convert_authors_state_dict(state_dict: Mapping[str, Tensor]) -> tuple[str, dict[str, Tensor]]:
    """Map an authors' state_dict (SIAN's RPDNet or PReNet) onto our modules.

    Returns the architecture name and the converted state_dict. A ``module.`` prefix (DataParallel)
    is stripped; keys the converter does not understand raise :class:`WeightsError` by name.
    """
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if any(k.startswith("body.") for k in sd):
        arch, out = "sian", _convert_sian(sd)
    elif "conv0.0.weight" in sd:
        arch, out = "prenet", _convert_prenet(sd)
    else:
        raise WeightsError(
            "not an authors' SIAN or PReNet checkpoint (no 'body.*' or 'conv0.0.weight' keys); "
            f"first keys: {sorted(state_dict)[:5]}"
        )
    if sd:
        raise WeightsError(f"unexpected keys in the authors' {arch} checkpoint: {sorted(sd)}")
    return arch, out


# --- reading and writing ------------------------------------------------------------------------


def save_weights(
    path: str | os.PathLike, model_or_state: nn.Module | Mapping[str, Tensor], arch: str,
    config: Mapping[str, Any], **metadata: str,
) -> Path:  # fmt: skip
    """Write weights as safetensors with ``arch``/``config`` metadata, atomically (temp file + rename)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"format": FORMAT, "arch": arch, "config": json.dumps(dict(config), sort_keys=True), **metadata}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return path


def read_weights_file(
    path: str | os.PathLike,
) -> tuple[str, dict[str, Any], dict[str, Tensor], dict[str, str]]:
    """Read a safetensors weight file: ``(arch, config, state_dict, metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weight file not found: {path}")
    if path.suffix.lower() in {".pth", ".pt", ".pkl", ".ckpt"}:
        raise WeightsError(
            f"{path} is a PyTorch pickle; pickles are not loaded directly. Convert it once with "
            f"'sian weights import {path} --name NAME' and load the name (or the .safetensors it writes)."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no mapping)
    except Exception as exc:
        raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from exc
    if metadata.get("format") != FORMAT or "arch" not in metadata or "config" not in metadata:
        raise WeightsError(
            f"{path} has no sian metadata (format/arch/config); it was not written by sian. "
            "Import it with 'sian weights import FILE --name NAME --variant VARIANT'."
        )
    return metadata["arch"], json.loads(metadata["config"]), state, metadata


def load_state_dict_checked(model: nn.Module, state: Mapping[str, Tensor], source: str = "weights") -> None:
    """``load_state_dict`` that names every missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        lines = [f"{source} do not fit the {type(model).__name__} architecture:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if shapes:
            lines.append(f"  shape mismatches ({len(shapes)}): {'; '.join(shapes)}")
        raise WeightsError("\n".join(lines))
    model.load_state_dict(state, strict=True)


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

    Example:
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


def _read_pickle(path: Path, trust_pickle: bool) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not trust_pickle:
            raise WeightsError(
                f"{path} cannot be read with the safe tensor-only unpickler ({exc.__class__.__name__}). "
                "Unpickling it could run arbitrary code: pass --trust-pickle only if you trust its source."
            ) from exc
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state_dict of tensors")
    return dict(obj)


def import_weights(
    source: str | os.PathLike, name: str, variant: str | None = None, *, force: bool = False,
    trust_pickle: bool = False, dest_dir: str | os.PathLike | None = None,
) -> Path:  # fmt: skip
    """Convert an authors' checkpoint into ``<weights_dir>/<name>.safetensors``.

    For a registered ``name`` the file's SHA-256 must equal the registered one (``force`` skips the
    check for modified files). Any other name is a user's own weights: ``variant`` then names the
    model variant whose config applies (guessed from the keys when omitted).
    """
    source = Path(source)
    if not source.is_file():
        raise WeightsNotFoundError(f"no such file: {source}")
    digest = sha256_file(source)
    entry = WEIGHTS.get(name)
    if entry is not None and entry.bundled:
        raise WeightsError(f"{name!r} ships with the package; import your file under another --name")
    if entry is not None and digest != entry.sha256 and not force:
        raise WeightsError(
            f"{source} is not the published {name!r} file: sha256 {digest} != {entry.sha256}. "
            "Pass --force to import it anyway, or choose another --name."
        )
    arch, state = convert_authors_state_dict(_read_pickle(source, trust_pickle))
    variant_name = variant or (entry.variant if entry else _guess_variant(arch, state))
    spec = get_variant(variant_name)
    if spec.arch != arch:
        raise WeightsError(f"{source} holds {arch} weights, but variant {variant_name!r} is a {spec.arch}")
    config = dict(spec.config)
    if arch == "sian":  # the head's depth is a config key: read it from the file, not the variant's default
        config["head_blocks"] = sum(1 for k in state if k.startswith("rain_head.") and k.endswith(".conv1.weight"))
    model = build_model(spec.arch, config)
    load_state_dict_checked(model, state, source=f"weights converted from {source}")
    dest = Path(dest_dir) if dest_dir is not None else weights_dir()
    return save_weights(
        dest / f"{name}.safetensors", state, spec.arch, model.config,
        name=name, variant=variant_name, source_sha256=digest, source_file=source.name,
    )  # fmt: skip


def _guess_variant(arch: str, state: Mapping[str, Tensor]) -> str:
    if arch == "prenet":
        return "prenet"
    return "sian" if any(".attention_conv." in k for k in state) else "sian_baseline_lstm"


def download_weights(name: str, timeout: float = 60.0) -> Path:
    """Download a registered authors' file, verify its SHA-256 and import it."""
    if name not in WEIGHTS:
        raise WeightsError(f"unknown weights name {name!r}; known: {', '.join(WEIGHTS)}")
    entry = WEIGHTS[name]
    if entry.bundled:
        raise WeightsError(f"{name!r} ships with the package: nothing to download")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"{name}.pth"
        try:
            with urllib.request.urlopen(entry.url, timeout=timeout) as response, open(target, "wb") as f:
                while block := response.read(1 << 20):
                    f.write(block)
        except OSError as exc:
            raise WeightsError(
                f"could not download {entry.url}: {exc}\n"
                f"Without network: fetch that file elsewhere and run 'sian weights import FILE --name {name}'."
            ) from exc
        return import_weights(target, name)
