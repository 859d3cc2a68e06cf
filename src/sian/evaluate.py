"""Benchmark evaluation: a model over every pair of a dataset, Y-channel PSNR/SSIM per protocol."""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch import nn

from .data import Pair
from .inference import Pipeline
from .io import read_image, to_tensor
from .metrics import Quantize, score_y

__all__ = ["EvalRow", "EvalSummary", "evaluate", "evaluate_self_ensembles", "summarize", "write_csv"]


@dataclass
class EvalRow:
    name: str
    psnr: float
    ssim: float
    input_psnr: float
    input_ssim: float
    seconds: float


@dataclass
class EvalSummary:
    images: int
    psnr: float
    ssim: float
    input_psnr: float
    input_ssim: float
    seconds_per_image: float


def evaluate(
    model: nn.Module | Pipeline,
    pairs: Iterable[Pair],
    quantization: Quantize = "round",
    on_row: Callable[[EvalRow], None] | None = None,
    tile: int | None = None,
    overlap: int = 64,
    precision: str = "fp32",
    tta: str | None = None,
) -> list[EvalRow]:
    """Derain every pair's rainy image and score it (and the rainy input) against the clean one.

    Whole images by default (benchmark numbers must not depend on tiling); ``tile`` tiles explicitly.
    A :class:`~sian.inference.Pipeline` given as ``model`` is used as it is (its own tiling and precision).
    """
    pipeline = model if isinstance(model, Pipeline) else Pipeline(
        model, precision=precision, tile=tile, overlap=overlap, memory_budget=None, quantization=quantization, tta=tta
    )  # fmt: skip
    rows = []
    for pair, rainy, clean in _read_pairs(pairs):
        start = time.perf_counter()
        output = pipeline.quantize(pipeline.tensor(to_tensor(rainy)))
        seconds = time.perf_counter() - start
        row = EvalRow(pair.name, *score_y(output, clean), *score_y(rainy, clean), seconds)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def evaluate_self_ensembles(
    model: nn.Module,
    pairs: Iterable[Pair],
    modes: Sequence[str | None],
    quantization: Quantize = "round",
    on_row: Callable[[str | None, EvalRow], None] | None = None,
    precision: str = "fp32",
) -> dict[str | None, list[EvalRow]]:
    """:func:`evaluate` under several self-ensembles (``None``, ``"flip2"``, ``"flip4"``) for the forward passes
    of the largest (:meth:`~sian.inference.Pipeline.self_ensembles`), whole images.

    Each mode's rows are the ones ``evaluate(model, pairs, tta=mode)`` gives, and each row's ``seconds`` is
    that mode's own cost: the forward passes it needs plus its quantisation.
    """
    pipeline = Pipeline(model, precision=precision, memory_budget=None, quantization=quantization)
    rows: dict[str | None, list[EvalRow]] = {mode: [] for mode in modes}
    for pair, rainy, clean in _read_pairs(pairs):
        input_scores, forward = score_y(rainy, clean), 0.0
        clock = time.perf_counter()
        for mode, tensor in pipeline.self_ensembles(to_tensor(rainy), modes):
            forward += time.perf_counter() - clock
            start = time.perf_counter()
            output = pipeline.quantize(tensor)
            row = EvalRow(pair.name, *score_y(output, clean), *input_scores, forward + time.perf_counter() - start)
            rows[mode].append(row)
            if on_row is not None:
                on_row(mode, row)
            clock = time.perf_counter()
    return rows


def _read_pairs(pairs: Iterable[Pair]) -> Iterator[tuple[Pair, np.ndarray, np.ndarray]]:
    for pair in pairs:
        rainy, clean = read_image(pair.rainy), read_image(pair.clean)
        if rainy.shape != clean.shape:
            raise ValueError(f"{pair.name}: rainy {rainy.shape} and clean {clean.shape} differ in size")
        yield pair, rainy, clean


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def summarize(rows: list[EvalRow]) -> EvalSummary:
    return EvalSummary(
        images=len(rows),
        psnr=_mean([r.psnr for r in rows]),
        ssim=_mean([r.ssim for r in rows]),
        input_psnr=_mean([r.input_psnr for r in rows]),
        input_ssim=_mean([r.input_ssim for r in rows]),
        seconds_per_image=_mean([r.seconds for r in rows]),
    )


def write_csv(path: str | os.PathLike, rows: list[EvalRow]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(EvalRow.__dataclass_fields__))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in asdict(row).items()})
    return path
