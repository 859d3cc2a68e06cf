"""Held-out validation with the benchmark metrics: real pairs, or fixed synthetic rain on clean images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._dist import Placement, gather_outcomes
from ..data import Pair, find_pairs
from ..inference import Pipeline
from ..io import read_image, to_tensor
from ..metrics import psnr_y, quantize, score_y
from ..synth import synthesize
from .config import DataConfig
from .datasets import (
    clean_split,
    dataset_of,
    list_clean_images,
    pairs_of,
    read_exclusions,
    read_pair_names,
    split_pairs,
)

__all__ = ["ValidationSet", "ValidationSources", "build_validation_set", "validate", "validation_sources"]

VAL_SEED_OFFSET = 1_000_000  # validation rain seeds never coincide with training sample seeds


@dataclass
class ValidationSet:
    names: list[str]
    rainy: list[np.ndarray]  # uint8 (H, W, 3)
    clean: list[np.ndarray]
    groups: list[str] = field(default_factory=list)  # per image: "pairs" or "synthetic"

    def __len__(self) -> int:
        return len(self.names)


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    if not size:
        return image
    h, w = image.shape[:2]
    th, tw = min(size, h), min(size, w)
    y, x = (h - th) // 2, (w - tw) // 2
    return image[y : y + th, x : x + tw]


@dataclass(frozen=True)
class ValidationSources:
    """Which files a config validates on, listed without reading them (:func:`validation_sources`)."""

    pairs: list[Pair]  # real rainy/clean pairs, scored as they are
    clean: list[Path]  # clean images that get fixed synthetic rain
    preset: str  # the synthetic rain's preset

    def __len__(self) -> int:
        return len(self.pairs) + len(self.clean)


def validation_sources(data: DataConfig) -> ValidationSources:
    """The files of a config's validation set, in its order: what :func:`build_validation_set` reads, and how
    many images it will have, at the cost of listing folders (no image is read or rained on)."""
    pairs: list[Pair] = []
    clean: list[Path] = []
    if data.val_pairs or data.val_split:
        if data.val_split:
            _, pairs = split_pairs(pairs_of(data.train_pairs), read_pair_names(data.val_split))
        else:
            pairs = find_pairs(data.val_pairs).pairs
    if data.val_clean or data.val_holdout:
        if data.val_holdout:
            _, clean = clean_split(data)
        else:
            clean = list_clean_images(data.val_clean, read_exclusions(data.exclude))
    limit = data.val_count or None
    return ValidationSources(list(pairs[:limit]), list(clean[:limit]), data.val_preset or data.synth_preset)


def build_validation_set(data: DataConfig) -> ValidationSet | None:
    """The fixed validation images of a config, or ``None`` when it names none.

    Real pairs (``val_pairs``, or ``val_split`` held out of ``train_pairs``), fixed synthetic rain on clean
    images (``val_clean``, or ``val_holdout`` held out of ``train_clean``), or, for a mixture of both
    training sources, both sets one after the other (the selection score is the mean over all images).
    """
    sources = validation_sources(data)
    val = ValidationSet([], [], [])

    def add(name: str, rainy: np.ndarray, clean: np.ndarray, group: str) -> None:
        val.names.append(name)
        val.rainy.append(rainy)
        val.clean.append(clean)
        val.groups.append(group)

    for pair in sources.pairs:
        rainy, clean = read_image(pair.rainy), read_image(pair.clean)
        group = dataset_of(pair) or "pairs"
        add(pair.name, _centre_crop(rainy, data.val_crop), _centre_crop(clean, data.val_crop), group)
    for index, path in enumerate(sources.clean):
        image = _centre_crop(read_image(path), data.val_crop)
        # held_out: streak-bank rain comes from the validation streak sets only (never trained on).
        synthetic, _ = synthesize(to_tensor(image)[0], sources.preset, seed=VAL_SEED_OFFSET + index, held_out=True)
        add(path.stem, quantize(synthetic), image, "synthetic")
    return val if val.names else None


def check_select(val: ValidationSet, select: Sequence[str]) -> None:
    """Fail when ``data.val_select`` names a group the validation set does not have (a typo would otherwise
    select on nothing)."""
    unknown = sorted(set(select) - set(val.groups))
    if unknown:
        raise ValueError(f"data.val_select names {unknown}, but the validation groups are {sorted(set(val.groups))}")


@torch.inference_mode()
def validate(
    model: nn.Module,
    val: ValidationSet,
    device: torch.device,
    where: Placement | None = None,
    select: Sequence[str] = (),
) -> dict[str, float | list[float]]:
    """Mean Y-PSNR/SSIM of the final stage, PSNR of every stage, and the rainy-input baseline.

    ``where``: this process's place in a torchrun job. Each process then scores every ``world``-th image
    and all receive the same result, averaged over the images in their order, as one process would.
    ``select``: groups whose images' mean PSNR is ``val_psnr``, the selection score (``data.val_select``); the
    mean over every image is then ``val_psnr_all``.
    """
    check_select(val, select)
    where = where or Placement(0, 1, 0)
    was_training = model.training
    model.eval()
    pipeline = Pipeline(model, precision="fp32")  # whole images in fp32: the score `sian eval` would give
    mine = {}
    for index in range(where.rank, len(val), where.world):
        outputs = [pipeline.quantize(out) for out in pipeline.stages(to_tensor(val.rainy[index]))]
        clean = val.clean[index]
        psnr, ssim = score_y(outputs[-1], clean)
        mine[index] = (psnr, ssim, psnr_y(val.rainy[index], clean), [psnr_y(out, clean) for out in outputs])
    model.train(was_training)
    scored = {index: scores for part in gather_outcomes(where, mine) for index, scores in part.items()}
    psnrs, ssims, inputs, stages = zip(*(scored[index] for index in range(len(val))), strict=True)
    result: dict[str, float | list[float]] = {
        "val_psnr": _finite_mean(psnrs),
        "val_ssim": float(np.nanmean(ssims)),
        "val_input_psnr": float(np.mean(inputs)),
        "val_stage_psnr": [float(np.mean(s)) for s in zip(*stages, strict=True)],
    }
    if select:
        result["val_psnr_all"] = result["val_psnr"]
        result["val_psnr"] = _finite_mean([p for p, g in zip(psnrs, val.groups, strict=True) if g in set(select)])
    if len(set(val.groups)) > 1:  # a mixture: each source's own mean too
        for group in sorted(set(val.groups)):
            scores = [psnr for psnr, g in zip(psnrs, val.groups, strict=True) if g == group]
            result[f"val_psnr_{group}"] = _finite_mean(scores)
    return result


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("inf")
