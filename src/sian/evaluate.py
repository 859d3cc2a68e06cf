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
from .inference import TTA_FLIPS, Pipeline
from .io import read_image, to_tensor
from .metrics import Quantize, score_y

__all__ = ["EvalReport", "EvalRow", "EvalSummary", "evaluate", "evaluate_pairs", "evaluate_self_ensembles",
           "parse_tta", "summarize", "write_csv"]  # fmt: skip


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


def parse_tta(text: str | None) -> list[str | None]:
    """The self-ensembles one evaluation scores: ``"flip2"`` -> ``["flip2"]``, ``"none,flip2,flip4"`` -> ``[None,
    "flip2", "flip4"]`` (scored from the passes of the largest), ``None`` or ``"none"`` -> ``[None]``.

    Examples:
        >>> parse_tta("none,flip4")
        [None, 'flip4']
    """
    names = [name.strip() for name in (text or "none").split(",")]
    unknown = [name for name in names if name != "none" and name not in TTA_FLIPS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"--tta: each of none, {', '.join(TTA_FLIPS)} at most once, got {text!r}")
    return [None if name == "none" else name for name in names]


@dataclass
class EvalReport:
    """A model over a dataset under one or more self-ensembles (``sian eval``): every row and each mode's summary.

    ``rows`` maps each mode's name (``"none"``, ``"flip2"``, ``"flip4"``) to its per-image rows.
    """

    rows: dict[str, list[EvalRow]]
    device: str
    several: bool  # scored as a list of modes (each timed by its own passes) rather than one mode

    @property
    def summaries(self) -> dict[str, EvalSummary]:
        return {mode: summarize(rows) for mode, rows in self.rows.items()}

    def table(self) -> list[str]:
        """The means as text lines: the rainy input, then each mode (with seconds per image for several)."""
        summaries = self.summaries
        first = next(iter(summaries.values()))
        if not self.several:
            return [f"{'':8}{'PSNR (Y)':>10}{'SSIM (Y)':>10}", f"{'input':8}{first.input_psnr:10.4f}"
                    f"{first.input_ssim:10.4f}", f"{'output':8}{first.psnr:10.4f}{first.ssim:10.4f}",
                    f"{first.images} images, {first.seconds_per_image:.2f} s per image on {self.device}"]  # fmt: skip
        lines = [f"{'':8}{'PSNR (Y)':>10}{'SSIM (Y)':>10}{'s / image':>11}",
                 f"{'input':8}{first.input_psnr:10.4f}{first.input_ssim:10.4f}"]  # fmt: skip
        lines += [f"{mode:8}{s.psnr:10.4f}{s.ssim:10.4f}{s.seconds_per_image:11.2f}" for mode, s in summaries.items()]
        return [*lines, f"{first.images} images on {self.device}; each mode timed by the passes it needs"]

    def write_csvs(self, path: str | os.PathLike) -> list[Path]:
        """Per-image rows: one CSV at ``path``, or one per mode beside it (``NAME-flip2.csv``) for several."""
        path = Path(path)
        if not self.several:
            return [write_csv(path, next(iter(self.rows.values())))]
        return [write_csv(path.with_name(f"{path.stem}-{mode}{path.suffix}"), rows) for mode, rows in self.rows.items()]

    def to_dict(self) -> dict:
        """The JSON result: one mode's ``summary`` and ``images``, or for several ``summaries`` and ``images`` by
        mode."""
        if not self.several:
            ((mode, rows),) = self.rows.items()
            return {"tta": None if mode == "none" else mode, "device": self.device,
                    "summary": asdict(summarize(rows)), "images": [asdict(r) for r in rows]}  # fmt: skip
        return {"tta": list(self.rows), "device": self.device,
                "summaries": {mode: asdict(s) for mode, s in self.summaries.items()},
                "images": {mode: [asdict(r) for r in rows] for mode, rows in self.rows.items()}}  # fmt: skip


def evaluate_pairs(
    model: nn.Module,
    pairs: Iterable[Pair],
    quantization: Quantize = "round",
    tta: Sequence[str | None] = (None,),
    on_row: Callable[[str, EvalRow], None] | None = None,
    tile: int | None = None,
    overlap: int = 64,
    precision: str = "fp32",
) -> EvalReport:
    """:func:`evaluate` for one self-ensemble, :func:`evaluate_self_ensembles` for several (whole images), as an
    :class:`EvalReport`. ``on_row(mode, row)`` follows every row as it is scored.

    Examples:
        >>> import numpy as np, tempfile
        >>> from pathlib import Path
        >>> from sian.data import find_pairs
        >>> from sian.io import write_image
        >>> from sian.models import create_model
        >>> folder = Path(tempfile.mkdtemp())
        >>> for kind, value in (("rainy", 120), ("gt", 100)):
        ...     _ = write_image(folder / kind / "a.png", np.full((16, 16, 3), value, np.uint8))
        >>> report = evaluate_pairs(create_model("sian", channels=4, stages=2), find_pairs(folder).pairs)
        >>> report.summaries["none"].images
        1
    """
    modes = list(tta)
    if len(modes) > 1 and tile is not None:
        raise ValueError("several self-ensembles are scored on whole images; give one --tta to combine it with --tile")

    def name(mode: str | None) -> str:
        return mode or "none"

    def follow(mode: str | None, row: EvalRow) -> None:
        if on_row is not None:
            on_row(name(mode), row)

    if len(modes) == 1:
        rows = evaluate(model, pairs, quantization, tile=tile, overlap=overlap, precision=precision, tta=modes[0],
                        on_row=lambda row: follow(modes[0], row))  # fmt: skip
        by_mode = {name(modes[0]): rows}
    else:
        found = evaluate_self_ensembles(model, pairs, modes, quantization, on_row=follow, precision=precision)
        by_mode = {name(mode): found[mode] for mode in modes}
    device = str(next(model.parameters()).device) if isinstance(model, nn.Module) else "cpu"
    return EvalReport(by_mode, device, several=len(modes) > 1)
