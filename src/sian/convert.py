"""Conversion of the authors' checkpoints (SIAN's RPDNet, PReNet) to our modules and weight files.

``from_pretrained`` and ``download_weights`` fetch a registered file (:mod:`sian.hub`) and convert it.
The authors' files are legacy ``torch.save`` pickles. They are read once, with
``torch.load(weights_only=True)`` (a restricted unpickler that only rebuilds tensors), converted to our
module names and written as safetensors into the weights folder. Nothing is ever unpickled with
arbitrary code execution unless the caller passes ``trust_pickle=True``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .hub import DEFAULT_MODEL, WEIGHTS, load_model, weights_dir
from .models import build_model, get_variant
from .weights import WeightsError, WeightsNotFoundError, load_state_dict_checked, save_weights, sha256_file

__all__ = ["convert_authors_state_dict", "download_weights", "from_pretrained", "import_weights", "read_checkpoint"]

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


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, Tensor]:
    """The state_dict of an authors' checkpoint (a ``torch.save`` pickle), read with the tensor-only unpickler
    unless ``trust_pickle``; its keys are the authors' own."""
    path = Path(path)
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
    arch, state = convert_authors_state_dict(read_checkpoint(source, trust_pickle))
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


def from_pretrained(name: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """A model with named weights (default: the package's default model), downloading registered
    authors' weights that are not installed yet. Offline, a missing file is a clear error that says how
    to import a local copy.

    Examples:
        >>> from_pretrained().training
        False
    """
    name = DEFAULT_MODEL if name is None else name
    entry = WEIGHTS.get(str(name))
    if entry is not None and not entry.bundled and not (weights_dir() / entry.filename).is_file():
        download_weights(str(name))
    return load_model(name, device=device)


def download_weights(name: str) -> Path:
    """Download a registered authors' file (torch.hub's downloader: a progress bar, and the file refused
    unless its SHA-256 matches the registry), then import it (:func:`sian.convert.import_weights`)."""
    if name not in WEIGHTS:
        raise WeightsError(f"unknown weights name {name!r}; known: {', '.join(WEIGHTS)}")
    entry = WEIGHTS[name]
    if entry.bundled:
        raise WeightsError(f"{name!r} ships with the package: nothing to download")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"{name}.pth"
        try:
            torch.hub.download_url_to_file(entry.url, str(target), hash_prefix=entry.sha256, progress=True)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a hash mismatch
            raise WeightsError(
                f"could not download {entry.url}: {exc}\n"
                f"Without network: fetch that file elsewhere and run 'sian weights import FILE --name {name}'."
            ) from exc
        return import_weights(target, name)
