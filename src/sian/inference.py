"""The one inference pipeline behind every entry point: ``sian derain``, ``sian.derain()``, ``sian eval``,
``sian serve``, ``sian demo``, ``sian explain`` and training validation.

A :class:`Pipeline` owns the model, its device and precision, tiling (aligned to the model's pooling
grid, accumulated on its device), the colour/alpha/bit-depth handling of the input and the single
conversion to integers (:func:`sian.io.quantize`). So a PNG written by the CLI, the array returned by
``sian.derain()`` and the image ``sian eval`` scores are the same bytes.

Examples:
    >>> import numpy as np, sian
    >>> pipe = Pipeline(sian.create_model("sian", channels=4, stages=2).eval())
    >>> pipe(np.zeros((20, 24, 3), np.uint8)).shape
    (20, 24, 3)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .hub import DEFAULT_MODEL, load_model
from .io import (
    DEFAULT_MAX_PIXELS,
    Picture,
    Quantize,
    from_tensor,
    is_video,
    picture_from_pil,
    quantize,
    read_picture,
    to_picture,
    to_tensor,
    write_picture,
)
from .models.layers import ConvLSTMCell, compiled_update_serves
from .models.sian_arch import SIAN, pyramid_kernels_serve
from .precision import PRECISIONS, PrecisionChoice, autocast, resolve_precision
from .scale_space import fused_kernel_serves
from .tiling import DEFAULT_OVERLAP, tile_starts, tiled_apply

__all__ = [
    "BYTES_PER_PIXEL",
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_MODEL",
    "MAX_AUTO_TILE",
    "PRECISIONS",
    "TTA_FLIPS",
    "FileOutcome",
    "Pipeline",
    "auto_tile",
    "derain",
    "derain_tensor",
    "plan_outputs",
    "resolve_device",
    "resolve_model",
    "shard",
]

_log = logging.getLogger(__name__)


# Self-ensembles: the flips (tensor dims) whose outputs are averaged, each flipped back.
TTA_FLIPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "flip2": ((), (-1,)),
    "flip4": ((), (-1,), (-2,), (-2, -1)),
}

# SIAN's peak inference memory per pixel, by the size in bytes of the maps' elements: the slope of peak RSS over
# square images in `python benchmarks/tile_study.py` (2026-11-27, CPU: 2.8 kB in float32 over 256-896 pixels, 1.6 kB
# under bf16 autocast over 256-1280; docs/benchmarks/tile-study-*.md). PReNet needs less.
BYTES_PER_PIXEL = {4: 2800, 2: 1600}
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
# Time per megapixel hardly depends on the tile size (same study), so automatic tiles are the largest the budget
# allows, which derain the fewest overlapping pixels, up to this side: beyond it float32 slows per megapixel.
MAX_AUTO_TILE = 1152


def resolve_device(device: str | torch.device | None, index: int | None = None) -> torch.device:
    """The device to run on, for inference and training alike.

    ``None`` or ``"auto"`` means CUDA when available, else CPU; ``index`` picks the GPU (a torchrun
    process's local rank) when none is named. Asking for an absent CUDA is a clear error.
    """
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device} was requested, but this PyTorch build sees no CUDA device")
        if device.index is None and index is not None:
            device = torch.device("cuda", index)
    return device


def resolve_model(model: nn.Module | str | os.PathLike | None, device: torch.device) -> nn.Module:
    if isinstance(model, nn.Module):
        return model  # used as given (device, layout, mode): a pipeline never modifies the caller's module
    return load_model(DEFAULT_MODEL if model is None else model, device=device)


def auto_tile(
    height: int, width: int, memory_budget: int = DEFAULT_MEMORY_BUDGET, dtype: torch.dtype = torch.float32
) -> int | None:
    """The tile size that keeps inference with ``dtype`` maps within ``memory_budget`` bytes, or ``None`` if the
    whole image fits: the largest such multiple of 64, at most :data:`MAX_AUTO_TILE`.

    Examples:
        >>> auto_tile(3000, 4000), auto_tile(3000, 4000, dtype=torch.bfloat16), auto_tile(321, 481)
        (832, 1152, None)
    """
    bytes_per_pixel = BYTES_PER_PIXEL[dtype.itemsize]
    if height * width * bytes_per_pixel <= memory_budget:
        return None
    side = int((memory_budget / bytes_per_pixel) ** 0.5) // 64 * 64
    return max(128, min(MAX_AUTO_TILE, side))


def _model_device(model: nn.Module) -> torch.device:
    device = getattr(model, "device", None)  # ONNX backends have no parameters
    return device if device is not None else next(model.parameters()).device


@dataclass
class FileOutcome:
    """What became of one input file in :meth:`Pipeline.derain_files`."""

    source: Path
    target: Path
    status: str  # written | skipped (the output exists) | failed
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "alpha channel dropped: JPEG has none"
    seconds: float = 0.0


class Pipeline:
    """Derain images, files and tensors with one model, the same way everywhere.

    Args:
        model: a loaded model (used as it is, on its own device), a registered weights name, a weight
            file, or an exported ONNX model (:class:`sian.export.OnnxModel`); ``None``: the default model.
        device: for a name or file: ``"cpu"``, ``"cuda"``, or ``None`` for CUDA when available.
        precision: ``auto`` (bf16 where the hardware runs it natively, fp16 on GPUs with tensor cores but no bf16,
            else fp32: :mod:`sian.precision`),
            ``fp32``, ``bf16`` or ``fp16`` (CUDA): autocast of the forward pass; results are float32. An
            ONNX model runs fp32. Benchmark scoring (``sian eval``, validation) asks for fp32.
        tile: derain in overlapping tiles of this size; ``None``: only images too large for ``memory_budget``.
        overlap: pixels shared (cross-faded) by neighbouring tiles.
        memory_budget: bytes of inference memory above which images are tiled automatically
            (``None``: never tile unless ``tile`` is given; benchmark scores use whole images).
        quantization: ``round`` (half up) or ``floor``, for every integer result.
        tta: self-ensemble: ``flip2`` averages the outputs for the image and its mirror image, ``flip4``
            also the vertical and the double flip, each output flipped back (:data:`TTA_FLIPS`). Rotations
            are not offered: rain streaks have a direction, and a model trained on near-vertical streaks
            does not remove horizontal ones (``tests/test_pipeline.py`` pins it).
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
        quantization: Quantize = "round",
        tta: str | None = None,
    ):
        if tta is not None and tta not in TTA_FLIPS:
            raise ValueError(f"tta must be one of {', '.join(TTA_FLIPS)} (or None), got {tta!r}")
        self.tta = tta
        self.model = model if isinstance(model, nn.Module) else resolve_model(model, resolve_device(device))
        self.device = _model_device(self.model)
        self.precision = resolve_precision(precision, self.device)
        if not any(True for _ in self.model.parameters()):  # an exported graph: its precision was fixed at export
            if precision not in ("fp32", "auto"):
                raise ValueError(f"precision {precision}: an exported ONNX model runs fp32 only; use fp32 or auto")
            self.precision = PrecisionChoice("fp32", f"{precision}: an exported ONNX model runs fp32")
        if tile is not None and tile < self.min_size:
            raise ValueError(f"tile {tile} is smaller than the model's minimum size {self.min_size}")
        self.tile, self.overlap, self.memory_budget, self.quantization = tile, overlap, memory_budget, quantization

    @property
    def min_size(self) -> int:
        """Smallest side the model takes, and the grid its tiles are aligned to (2**(octaves - 1) for SIAN)."""
        return int(getattr(self.model, "min_size", 1))

    def describe(self) -> str:
        """One line for logs and ``--verbose``: model device, precision and why, self-ensemble, and on a CPU
        whether the ConvLSTM update, SIAN's DoG pyramid and its attention and fusion inputs run as compiled kernels
        (sian/_native) or not."""
        ensemble = f", {self.tta} self-ensemble" if self.tta else ""
        kernels = ""
        if self.device.type == "cpu":  # the kernels see the autocast dtype's maps
            dtype = self.precision.dtype
            if any(isinstance(m, ConvLSTMCell) for m in self.model.modules()):
                compiled = compiled_update_serves(self.device, dtype)
                kernels += ", ConvLSTM update: " + ("compiled kernel" if compiled else "PyTorch operations")
            if isinstance(self.model, SIAN):
                steps = "compiled kernels" if pyramid_kernels_serve(self.device, dtype) else "PyTorch operations"
                kernels += f", attention and fusion inputs: {steps}"
            pyramid = getattr(self.model, "scale_space", None)
            if pyramid is not None:
                fusable = fused_kernel_serves(pyramid.mode, self.device, dtype)
                kernels += ", DoG pyramid: " + ("fused kernel" if fusable else "PyTorch operations")
        return f"{self.device.type}, {self.precision.precision} ({self.precision.reason}){ensemble}{kernels}"

    # -- tensors -------------------------------------------------------------------------------------------

    def _forward(self, batch: Tensor, return_all: bool) -> Tensor | list[Tensor]:
        height, width = batch.shape[-2:]
        if min(height, width) < self.min_size:  # tiny images: edge-replicate up to the minimum, crop back
            pad_h, pad_w = max(0, self.min_size - height), max(0, self.min_size - width)
            padded = torch.nn.functional.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
            out = self._forward(padded, return_all)
            return [o[..., :height, :width] for o in out] if return_all else out[..., :height, :width]
        batch = batch.to(self.device, memory_format=torch.channels_last)
        with autocast(self.precision, self.device):  # fp32: IEEE float32 convolutions on CUDA too (no TF32)
            out = self.model(batch, return_all=return_all)
        return [o.float() for o in out] if return_all else out.float()  # float32 stays as it is, no copy

    @torch.inference_mode()
    def tensor(self, rainy: Tensor) -> Tensor:
        """The final-stage output for a batch ``(B, 3, H, W)`` in [0, 1]: float32, unclipped, on the model's device."""
        tile = self.tile
        if tile is None and self.memory_budget is not None:
            tile = auto_tile(rainy.shape[-2], rainy.shape[-1], self.memory_budget, self.precision.dtype)
        run = self._ensemble if self.tta else lambda batch: self._forward(batch, return_all=False)
        if tile is None:
            return run(rainy)
        if _log.isEnabledFor(logging.DEBUG):  # the layout is tiled_apply's; recomputed only for --verbose
            rows, cols = (len(tile_starts(n, tile, self.overlap, self.min_size)) for n in rainy.shape[-2:])
            if rows * cols > 1:
                why = "as asked" if self.tile else f"automatic: the memory budget in {self.precision.precision}"
                _log.debug(f"{rainy.shape[-1]}x{rainy.shape[-2]} in {rows * cols} tiles of at most {tile} pixels, "
                           f"overlap {self.overlap} ({why})")  # fmt: skip
        return tiled_apply(run, rainy.to(self.device), tile, self.overlap, align=self.min_size)

    def _ensemble(self, batch: Tensor) -> Tensor:
        """The mean of the model's outputs over the flips of :attr:`tta`, each flipped back."""
        for _, out in self._ensembles(batch, (self.tta,)):
            return out
        raise AssertionError("unreachable: one mode yields one output")

    @torch.inference_mode()
    def self_ensembles(self, rainy: Tensor, modes: Sequence[str | None]) -> Iterator[tuple[str | None, Tensor]]:
        """:meth:`tensor` under several self-ensembles at the cost of the largest (whole images only).

        The flips of each mode are the first flips of the next (``None``, then ``flip2``, then ``flip4``), so
        one forward pass per flip serves them all, and every output is bit-identical to its own run: the
        running sum is the one :meth:`tensor` would form. Yields ``(mode, output)`` as soon as a mode's flips
        are done, smallest first, so a caller can time what each mode costs on its own.

        Examples:
            >>> import sian
            >>> pipe = Pipeline(sian.create_model("sian", channels=4, stages=2).eval(), precision="fp32")
            >>> [mode for mode, _ in pipe.self_ensembles(torch.rand(1, 3, 16, 16), [None, "flip4", "flip2"])]
            [None, 'flip2', 'flip4']
        """
        for mode in modes:
            if mode is not None and mode not in TTA_FLIPS:
                raise ValueError(f"tta must be one of {', '.join(TTA_FLIPS)} (or None), got {mode!r}")
        if self.tile is not None:
            raise ValueError("self_ensembles runs whole images; use tensor() with one tta per Pipeline to tile")
        yield from self._ensembles(rainy, modes)

    def _ensembles(self, batch: Tensor, modes: Sequence[str | None]) -> Iterator[tuple[str | None, Tensor]]:
        flips_of = {mode: TTA_FLIPS[mode] if mode else ((),) for mode in modes}
        ordered = sorted(flips_of, key=lambda mode: len(flips_of[mode]))
        longest = flips_of[ordered[-1]]
        if any(longest[: len(flips)] != flips for flips in flips_of.values()):
            raise ValueError(f"the flips of {ordered} are not prefixes of one another")
        total = None
        for count, dims in enumerate(longest, 1):
            flipped = batch.flip(dims) if dims else batch
            out = self._forward(flipped, return_all=False)
            out = out.flip(dims) if dims else out
            total = out if total is None else total + out
            for mode in ordered:
                if len(flips_of[mode]) == count:
                    yield mode, (total if mode is None else total / count)

    @torch.inference_mode()
    def stages(self, rainy: Tensor) -> list[Tensor]:
        """Every stage's output for a batch (whole image, never tiled): validation and ``sian explain``."""
        return self._forward(rainy, return_all=True)

    def quantize(self, output: Tensor) -> np.ndarray:
        """The benchmark's view of an output: clipped, 8-bit RGB ``(H, W, 3)`` (the one conversion)."""
        return quantize(output, self.quantization)

    # -- images ----------------------------------------------------------------------------------------------

    def _checked(self, picture: Picture) -> Tensor:
        output = self.tensor(picture.to_tensor())
        if not torch.isfinite(output).all():
            raise RuntimeError("the model produced NaN/inf values; nothing written")
        return output

    def picture(self, picture: Picture) -> tuple[Picture, Tensor]:
        """Derain a :class:`Picture`: the result in the source's form (bit depth, gray, alpha) and the raw output."""
        output = self._checked(picture)
        return to_picture(from_tensor(output), picture, self.quantization), output

    def __call__(self, images: Any) -> Any:
        """Derain one image or a list of them, returning the same kind.

        A PIL image gives a PIL image of the same kind (RGB, L, RGBA and LA keep gray and alpha; 16-bit
        gray stays 16-bit). An array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` of ``uint8`` or ``uint16``
        gives the same shape and dtype; a float array in [0, 1] ``(H, W, 3)`` gives float32, clipped.
        """
        if isinstance(images, list | tuple):  # decode the next image while the model works on this one
            return list(map(self._finish, images, _prefetched(images, self._start)))
        return self._finish(images, self._start(images))

    def _start(self, image: Any) -> Picture | np.ndarray:
        """The decoding half of :meth:`__call__` (PIL images decode lazily, here)."""
        if isinstance(image, Image.Image):
            return picture_from_pil(image)
        if isinstance(image, np.ndarray):
            return image if image.dtype.kind == "f" else _picture_from_array(image)
        raise TypeError(f"derain takes a PIL image, a numpy array or a list of them, got {type(image).__name__}")

    def _finish(self, images: Any, decoded: Picture | np.ndarray) -> Any:
        if isinstance(decoded, np.ndarray):  # float RGB in [0, 1]
            if decoded.ndim != 3 or decoded.shape[2] != 3:
                raise ValueError(f"a float image must be (H, W, 3) RGB in [0, 1], got shape {decoded.shape}")
            return np.clip(from_tensor(self.tensor(to_tensor(decoded))), 0.0, 1.0)
        result, _ = self.picture(decoded)
        return _to_pil(result) if isinstance(images, Image.Image) else _to_array(result, images)

    # -- files -----------------------------------------------------------------------------------------------

    def derain_files(
        self, jobs: Sequence[tuple[Path, Path]], overwrite: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> Iterator[FileOutcome]:
        """Derain ``(source, target)`` pairs in order, one :class:`FileOutcome` each, reading the next file
        while the model works on the current one. Existing targets are skipped unless ``overwrite``; a file
        that fails (unreadable, too large, unwritable) is reported and the batch goes on. Writes are atomic.
        """

        def read(source: Path) -> Picture | Exception:
            try:
                return read_picture(source, max_pixels=max_pixels)
            except (ValueError, OSError, MemoryError) as exc:  # ImageReadError is a ValueError
                return exc

        todo = [(s, t) for s, t in jobs if overwrite or not t.exists()]
        decoded = _prefetched([s for s, _ in todo], read)
        for source, target in jobs:
            if todo and todo[0] == (source, target):
                todo.pop(0)
                yield self._derain_file(source, target, next(decoded), overwrite)
            else:
                yield FileOutcome(source, target, "skipped")

    def _derain_file(self, source: Path, target: Path, picture: Picture | Exception, overwrite: bool) -> FileOutcome:
        start = time.perf_counter()
        try:
            if isinstance(picture, Exception):
                raise picture
            output = self._checked(picture)
            notes = write_picture(target, from_tensor(output), picture, overwrite, self.quantization)
        except (ValueError, OSError, RuntimeError, MemoryError) as exc:
            return FileOutcome(source, target, "failed", str(exc), seconds=time.perf_counter() - start)
        return FileOutcome(source, target, "written", notes=notes, seconds=time.perf_counter() - start)


def plan_outputs(
    files: Sequence[Path], output: Path, suffix: str = "", fmt: str = "png"
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """``(source, target)`` jobs for deraining ``files`` into the folder ``output`` as ``STEM{suffix}.{fmt}``
    (a video keeps its container: ``STEM{suffix}.mp4``), and the inputs refused with the reason: two
    inputs that would write one file, or an output that would replace an input (never overwritten).
    """
    jobs: list[tuple[Path, Path]] = []
    refused: list[tuple[Path, str]] = []
    inputs = {Path(f).resolve() for f in files}
    taken: set[Path] = set()
    for path in files:
        extension = path.suffix.lower().lstrip(".") if is_video(path) else fmt
        target = (output / f"{path.stem}{suffix}.{extension}").resolve()
        if target in taken:
            refused.append((path, f"another input also writes {target.name}; rename one or derain them separately"))
        elif target in inputs:
            refused.append((path, f"output {target} would replace an input; choose another --output or --suffix"))
        else:
            taken.add(target)
            jobs.append((path, target))
    return jobs, refused


def shard(jobs: Sequence[Any], rank: int, world: int) -> list[Any]:
    """Process ``rank``'s share of ``jobs`` among ``world`` processes: jobs ``rank, rank + world, ...``.
    Every job goes to exactly one process, and a resumed run (same inputs) gives each the same share.

    Examples:
        >>> shard(list("abcde"), 0, 2), shard(list("abcde"), 1, 2)
        (['a', 'c', 'e'], ['b', 'd'])
    """
    return list(jobs[rank::world])


def _prefetched(items: Sequence, load: Callable[[Any], Any]) -> Iterator[Any]:
    """``load(item)`` for each item in order, the next one loading in a thread while the caller works."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sian-decode") as pool:
        pending = pool.submit(load, items[0]) if items else None
        for index in range(len(items)):
            current = pending.result()
            pending = pool.submit(load, items[index + 1]) if index + 1 < len(items) else None
            yield current


def _picture_from_array(array: np.ndarray) -> Picture:
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"an integer image must be uint8 or uint16, got {array.dtype}")
    if array.ndim == 2:
        return Picture(np.repeat(array[..., None], 3, axis=2), None, True)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        alpha = array[..., 3].copy() if array.shape[2] == 4 else None
        return Picture(np.ascontiguousarray(array[..., :3]), alpha)
    raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {array.shape}")


def _to_array(result: Picture, like: np.ndarray) -> np.ndarray:
    if like.ndim == 2:
        return result.rgb[..., 0]
    if like.shape[2] == 4:
        return np.concatenate([result.rgb, result.alpha[..., None].astype(result.rgb.dtype)], axis=2)
    return result.rgb


def _to_pil(result: Picture) -> Image.Image:
    if result.bit_depth == 16:
        if result.gray and result.alpha is None:
            return Image.fromarray(np.ascontiguousarray(result.rgb[..., 0]))
        result = to_picture(result.rgb / 65535.0, result, bits=8)  # PIL holds 16-bit gray only
    if result.gray:
        image = Image.fromarray(np.ascontiguousarray(result.rgb[..., 0]))
        return image if result.alpha is None else Image.merge("LA", (image, Image.fromarray(result.alpha)))
    if result.alpha is None:
        return Image.fromarray(result.rgb)
    return Image.fromarray(np.concatenate([result.rgb, result.alpha[..., None]], axis=2))


def derain_tensor(
    model: nn.Module, rainy: Tensor, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET, precision: str = "auto",
) -> Tensor:  # fmt: skip
    """The final-stage output for a batch ``(B, 3, H, W)`` in [0, 1]; not clipped (:meth:`Pipeline.tensor`).

    ``precision``: ``auto`` like every entry point of the library (bf16 only where the hardware runs it natively);
    ``fp32`` for benchmark-exact scores."""
    return Pipeline(model, precision=precision, tile=tile, overlap=overlap, memory_budget=memory_budget).tensor(rainy)


def derain(
    image: Any,
    model: nn.Module | str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    quantization: Quantize = "round",
    precision: str = "auto",
    tta: str | None = None,
) -> Any:
    """Derain one image (or a list): the same kind back, alpha, gray and 16-bit kept (:class:`Pipeline`).

    Args:
        image: a PIL image (any mode), or an ``(H, W[, 3|4])`` ``uint8``/``uint16`` array, or an
            ``(H, W, 3)`` float array in [0, 1]; or a list of those.
        model: a loaded model (used as it is, on its own device, and not modified), a registered
            weights name or a weight file (default: our shipped ``sian-general``).
        device: for a name or file: ``"cpu"``, ``"cuda"``, or ``None`` for CUDA when available.
        quantization: how float outputs become integers.
        precision: ``auto`` (default: bf16 only where the hardware runs it natively), ``fp32``, ``bf16``
            or ``fp16`` (:mod:`sian.precision`).
        tta: ``flip2`` or ``flip4`` self-ensemble (:class:`Pipeline`).

    Examples:
        >>> from PIL import Image
        >>> from sian.demo import load_example
        >>> rainy, _ = load_example()
        >>> derain(Image.fromarray(rainy[:64, :64]).convert("RGBA")).mode
        'RGBA'
    """
    return Pipeline(model, device=device, quantization=quantization, precision=precision, tta=tta)(image)
