"""Typed training configuration: YAML files plus ``key=value`` overrides, checked by OmegaConf.

A config file may name a ``base`` file (relative to itself) whose values it overrides, so the
ablation configs are a few lines on top of the paper's. Paths may use ``${oc.env:SIAN_SHARED,../shared}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "StopConfig",
    "TrainConfig",
    "TrainingConfig",
    "load_config",
    "to_dict",
]


@dataclass
class ModelConfig:
    variant: str = "sian"  # a registered variant (`sian models`)
    overrides: dict[str, Any] = field(default_factory=dict)  # constructor arguments on top of the variant
    # Start from these weights (a name from `sian weights list` or a .safetensors file) instead of the
    # random release initialisation: fine-tuning. Or another run's state.pt: its weights and its optimizer's
    # moments, the step count and the schedule starting afresh (a second run that continues a finished one).
    # Ignored on --resume, which restores the checkpoint.
    init: str | None = None


@dataclass
class DataConfig:
    # Real pairs: dataset folders in any layout `sian eval` reads.
    train_pairs: list[str] = field(default_factory=list)
    # Or clean image folders with synthetic rain rendered on the fly (`sian synth` presets).
    train_clean: list[str] = field(default_factory=list)
    # Files whose first column names clean images to leave out (e.g. the BSDS500 images that are
    # Rain100 test backgrounds); matched by file stem.
    exclude: list[str] = field(default_factory=list)
    # Left out of training only, after the val_holdout draw (the draw, and so the held-out images, stay put):
    # e.g. the backgrounds of held-out validation pairs.
    exclude_training: list[str] = field(default_factory=list)
    synth_preset: str = "light"  # a preset, or a mixture drawn per sample: "light+classic"
    # With both train_pairs and train_clean: the share of samples that are real pairs, drawn per sample
    # (the rest: synthetic rain on clean images).
    pair_fraction: float = 0.5
    # With several train_pairs folders: the share of pair samples drawn from each (relative weights, one per
    # folder); empty: every pair equally likely. Pair names are then qualified by folder: "RainTrainH_12/norain-9".
    pair_weights: list[float] = field(default_factory=list)
    patch_size: int = 120
    # None: a random crop per sample. An integer: the paper's fixed grid of patches with this stride,
    # visited in a fresh random order each epoch.
    patch_stride: int | None = None
    hflip: bool = True
    # Validation: real pairs, or held-out clean images with fixed synthetic rain (seed = index).
    val_pairs: str | None = None
    # Or a file of pair names (one per line) held out of data.train_pairs: those pairs are never trained on
    # and are the validation set (a fixed, committed split, e.g. configs/splits/rain100l-train-val20.txt).
    val_split: str | None = None
    val_clean: list[str] = field(default_factory=list)
    # Or hold out this many of the train_clean images (a fixed draw that does not depend on train.seed):
    # they are never trained on and carry fixed synthetic rain for validation.
    val_holdout: int = 0
    val_count: int = 16
    # Rain of the synthetic validation set (default: synth_preset). A different renderer, e.g. "classic",
    # keeps checkpoint selection from rewarding the training renderer's own quirks.
    val_preset: str | None = None
    val_crop: int = 256  # centre crop of validation images (0: whole images)
    # The validation groups whose images' mean Y-PSNR is the selection score val_psnr (best.safetensors, the
    # stopping rule): "synthetic", "pairs", or with several train_pairs folders a folder's name. Empty: every image.
    val_select: list[str] = field(default_factory=list)
    workers: int = 0


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | multistep
    milestones: list[float] = field(default_factory=list)  # fractions of the run, for multistep
    gamma: float = 0.2
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0: off


@dataclass
class StopConfig:
    """Stop early by the validation curve (:mod:`sian.training.stopping`), in CPU-equivalent machine-hours:
    judged only after ``min_hours``, stop when the best validation PSNR has gained less than ``min_gain`` dB
    over the last ``window_hours``, or at ``max_hours``. ``min_gain`` 0 and ``max_hours`` 0: off (default)."""

    min_hours: float = 0.0
    window_hours: float = 3.0
    min_gain: float = 0.0
    max_hours: float = 0.0


@dataclass
class TrainConfig:
    loss: str = "ssim"  # ssim (the paper: negative SSIM summed over stages) | mae | mse
    batch_size: int = 18  # global batch: split evenly across torchrun processes
    steps: int = 0  # total optimizer steps; 0: derive from epochs
    epochs: int = 0  # passes over the fixed patch grid (needs data.patch_stride)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # Autocast of the forward pass (loss, gradients and optimizer state stay fp32): fp32 | bf16 | fp16 (CUDA,
    # with a gradient scaler) | auto (bf16 where the hardware runs it natively, fp16 on GPUs with tensor cores
    # but no bf16, else fp32; sian.precision).
    precision: str = "fp32"
    threads: int = 0  # CPU threads per process (0: PyTorch's default)
    log_every: int = 10
    val_every: int = 500
    checkpoint_minutes: float = 5.0
    # Exponential moving average of the weights after every update (BasicSR's ema_decay), e.g. 0.999: the
    # averaged weights are what is validated, selected (best.safetensors), written (last.safetensors) and
    # resumed exactly. 0: off.
    ema_decay: float = 0.0
    # A NaN/inf loss or gradient never reaches the weights: "skip" drops that update, "rollback" also
    # restores the weights and optimizer state of the last checkpoint, "stop" ends the run with an error.
    # More than max_nonfinite in a row stops the run under any policy.
    nonfinite: str = "skip"
    max_nonfinite: int = 20
    out_dir: str = "runs/sian"
    # Applied after every validation and at a resume: a run it ends writes STOPPED (the verdict) in out_dir.
    stop: StopConfig = field(default_factory=StopConfig)


@dataclass
class TrainingConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _load_yaml_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    path = path.resolve()
    if path in seen:
        raise ValueError(f"config 'base' cycle: {' -> '.join(map(str, (*seen, path)))}")
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    raw = OmegaConf.load(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    return OmegaConf.merge(_load_yaml_with_bases(path.parent / str(base), (*seen, path)), raw)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> TrainingConfig:
    """Merge defaults, a YAML file (with its ``base`` chain) and ``key=value`` overrides, type-checked.

    Examples:
        >>> cfg = load_config(None, ["data.train_clean=[photos]", "train.steps=10", "train.batch_size=4"])
        >>> cfg.train.batch_size, cfg.optim.lr
        (4, 0.0002)
    """
    schema = OmegaConf.structured(TrainingConfig)
    layers = [schema]
    if path is not None:
        layers.append(_load_yaml_with_bases(Path(path)))
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    merged = OmegaConf.merge(*layers)
    OmegaConf.resolve(merged)
    config: TrainingConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    _validate(config)
    return config


def _validate(config: TrainingConfig) -> None:
    if config.train.loss not in ("ssim", "mae", "mse"):
        raise ValueError(f"train.loss must be ssim, mae or mse, got {config.train.loss!r}")
    if not config.data.train_pairs and not config.data.train_clean:
        raise ValueError("no training data: set data.train_pairs (real pairs) or data.train_clean (synthetic rain)")
    if config.train.steps <= 0 and config.train.epochs <= 0:
        raise ValueError("set train.steps or train.epochs")
    if config.train.epochs > 0 and config.data.patch_stride is None:
        raise ValueError("train.epochs needs data.patch_stride (an epoch is one pass over the patch grid)")
    if config.train.nonfinite not in ("skip", "rollback", "stop"):
        raise ValueError(f"train.nonfinite must be skip, rollback or stop, got {config.train.nonfinite!r}")
    from ..precision import PRECISIONS

    if config.train.precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {config.train.precision!r}")
    if config.optim.schedule not in ("constant", "cosine", "multistep"):
        raise ValueError(f"optim.schedule must be constant, cosine or multistep, got {config.optim.schedule!r}")
    if config.data.val_split and (config.data.val_pairs or config.data.val_clean or not config.data.train_pairs):
        raise ValueError("data.val_split holds pairs out of data.train_pairs; it excludes data.val_pairs and val_clean")
    if config.data.val_holdout and (config.data.val_clean or config.data.val_pairs or not config.data.train_clean):
        raise ValueError("data.val_holdout splits data.train_clean; it excludes data.val_clean and data.val_pairs")
    from ..synth import PRESETS, is_preset  # here, not at the top: configs load without the renderers' imports

    for key in ("synth_preset", "val_preset"):
        value = getattr(config.data, key)
        if value is not None and not is_preset(value):
            raise ValueError(f"data.{key} must be one of {', '.join(PRESETS)} or a mixture like light+classic, "
                             f"got {value!r}")  # fmt: skip
    if config.data.train_pairs and config.data.train_clean:
        if not 0 < config.data.pair_fraction < 1:
            raise ValueError(f"data.pair_fraction must be in (0, 1) to mix pairs and clean images, "
                             f"got {config.data.pair_fraction}")  # fmt: skip
        if config.data.patch_stride:
            raise ValueError("data.patch_stride (the paper's patch grid) is for pairs alone, not a mixture")
    if config.train.batch_size < 1 or config.data.patch_size < 16:
        raise ValueError("train.batch_size must be >= 1 and data.patch_size >= 16")
    stop = config.train.stop
    if min(stop.min_hours, stop.min_gain, stop.max_hours) < 0 or stop.window_hours <= 0:
        raise ValueError("train.stop: hours and min_gain must be >= 0 and window_hours > 0")
    if (stop.min_gain or stop.max_hours) and not config.train.val_every:
        raise ValueError("train.stop judges the validation curve: set train.val_every (and a validation set)")


def to_dict(config: TrainingConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]
