"""Deraining many files at once: what ``sian derain`` does, as a function that returns a report.

Files, folders of images and videos go into one output folder; outputs that exist are skipped unless
``overwrite`` (an input is never replaced); a file that fails is reported and the batch goes on. Under
``torchrun`` every process takes its share of the files (process ``r`` of ``N``: files ``r, r + N, ...``) on its
own device, and process 0's report holds every process's outcome.

    >>> import sian, tempfile
    >>> from pathlib import Path
    >>> from sian.batch import derain_batch
    >>> from sian.demo import load_example
    >>> from sian.io import write_image
    >>> folder = Path(tempfile.mkdtemp())
    >>> source = write_image(folder / "rainy.png", load_example()[0][:64, :64])
    >>> report = derain_batch([source], folder / "out", model=sian.create_model("sian", channels=4, stages=2))
    >>> [Path(w["output"]).name for w in report.written], report.failed
    (['rainy.png'], [])
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ._dist import gather_outcomes, join_group, leave_group, placement
from ._progress import progress_bar
from .hub import DEFAULT_MODEL, load_model
from .inference import (
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_OVERLAP,
    FileOutcome,
    Pipeline,
    plan_outputs,
    resolve_device,
    shard,
)
from .io import DEFAULT_MAX_PIXELS, is_video

__all__ = ["BatchReport", "derain_batch"]

log = logging.getLogger("sian")


@dataclass
class BatchReport:
    """What became of every input: written (with the output, seconds and notes), skipped, failed (with why)."""

    model: str
    precision: str
    pipeline: str  # Pipeline.describe(): device, precision and why, kernels
    seconds: float
    processes: int
    written: list[dict] = field(default_factory=list)  # {"input", "output", "seconds", "notes"}
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {"input", "error"}
    ranks: list[dict] = field(default_factory=list)  # each process's share
    is_main: bool = True  # process 0 of a torchrun job (the one that reports)

    def to_dict(self) -> dict:
        """The JSON of ``sian derain --json``."""
        return {"model": self.model, "precision": self.precision, "seconds": self.seconds,
                "processes": self.processes, "written": self.written, "skipped": self.skipped,
                "failed": self.failed, "ranks": self.ranks}  # fmt: skip


def _load_onnx(model: str) -> nn.Module:
    from .export import OnnxModel

    if not model.lower().endswith(".onnx"):
        raise ValueError(
            f"--backend onnx runs an exported file: pass --model FILE.onnx (from 'sian export'), got {model!r}"
        )
    try:
        return OnnxModel(model)
    except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
        raise ValueError(f"cannot load {model} with onnxruntime: {exc}") from None


def _derain_video(pipeline: Pipeline, source: Path, target: Path, overwrite: bool, crf: int, progress: bool):
    """One video through :func:`sian.video.derain_video`, as a :class:`FileOutcome`, with a frame counter."""
    if target.exists() and not overwrite:
        return FileOutcome(source, target, "skipped")
    from .video import VideoError, derain_video

    bar = progress_bar(desc=source.name, unit="frame", disable=not progress)
    try:
        report = derain_video(source, target, pipeline, crf=crf, overwrite=overwrite, on_frames=bar.update)
    except (VideoError, ValueError, OSError, RuntimeError) as exc:
        return FileOutcome(source, target, "failed", str(exc))
    finally:
        bar.close()
    note = f"{report.frames} frames at {float(report.rate):g} fps, {report.audio_streams} audio stream(s) copied"
    return FileOutcome(source, target, "written", notes=[note], seconds=report.seconds)


def derain_batch(
    files: list[Path],
    output: str | Path,
    *,
    model: str | nn.Module = DEFAULT_MODEL,
    device: str | None = None,
    backend: str = "torch",
    precision: str = "auto",
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
    quantization: str = "round",
    tta: str | None = None,
    suffix: str = "",
    fmt: str = "png",
    overwrite: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    video_crf: int = 17,
    progress: bool = True,
) -> BatchReport:
    """Derain ``files`` (images and videos) into the folder ``output`` as ``STEM{suffix}.{fmt}``.

    ``model``: a registered name, a weights file, a loaded model, or with ``backend="onnx"`` an exported
    ``.onnx`` file; the other arguments are :class:`~sian.inference.Pipeline`'s. Raises ``ValueError`` (and
    :class:`~sian.weights.WeightsError`) for what cannot start at all; a file that fails is in the report.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is not a folder")
    jobs, refused = plan_outputs(files, output, suffix, fmt)
    where = placement()
    if backend == "onnx":
        net = _load_onnx(str(model))
    elif isinstance(model, nn.Module):
        net = model
    else:
        net = load_model(model, device=resolve_device(device, index=where.local_rank))
    name = model if isinstance(model, str) else type(model).__name__
    pipeline = Pipeline(net, precision=precision, tile=tile, overlap=overlap, tta=tta, memory_budget=memory_budget,
                        quantization=quantization)  # fmt: skip
    join_group(where, pipeline.device)
    log.debug(f"derain with {name}: {pipeline.describe()}")
    mine = shard(jobs, where.rank, where.world)
    written, skipped, failed = [], [], []
    start = time.perf_counter()
    videos = [job for job in mine if is_video(job[0])]
    images = [job for job in mine if not is_video(job[0])]
    show = progress and where.is_main and bool(images)
    bar = progress_bar(total=len(images), desc="derain", unit="img", disable=not show)
    outcomes = pipeline.derain_files(images, overwrite=overwrite, max_pixels=max_pixels)
    videos_done = (_derain_video(pipeline, s, t, overwrite, video_crf, progress) for s, t in videos)
    for outcome in itertools.chain(outcomes, videos_done):
        if not is_video(outcome.source):
            bar.update()
        if outcome.status == "written":
            written.append({"input": str(outcome.source), "output": str(outcome.target), "seconds": outcome.seconds,
                            "notes": outcome.notes})  # fmt: skip
        elif outcome.status == "skipped":
            skipped.append(str(outcome.target))
        else:
            failed.append({"input": str(outcome.source), "error": outcome.error})
    bar.close()
    seconds = time.perf_counter() - start
    ranks = gather_outcomes(where, {"rank": where.rank, "seconds": seconds, "skipped": skipped, "written": written,
                                    "failed": failed})  # fmt: skip
    leave_group()
    return BatchReport(
        model=name, precision=pipeline.precision.precision, pipeline=pipeline.describe(), seconds=seconds,
        processes=where.world, written=[w for r in ranks for w in r["written"]],
        skipped=[s for r in ranks for s in r["skipped"]],
        failed=[{"input": str(p), "error": e} for p, e in refused] + [f for r in ranks for f in r["failed"]],
        ranks=ranks, is_main=where.is_main,
    )  # fmt: skip
