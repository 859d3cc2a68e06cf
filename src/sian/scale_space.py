"""SIFT-style Gaussian scale space and difference-of-Gaussian (DoG) pyramid of feature maps.

SIAN (Pang et al., Sec. III-C) builds a scale space of its 32-channel features, not of the image:
each octave holds ``intervals + 3`` Gaussian images, successive differences give ``intervals + 2``
DoG maps, and the next octave starts from a 2x2 max-pool of Gaussian image ``intervals``. The DoG
maps of an octave, stacked along channels, drive that octave's attention mask.

Two kernel modes exist because the authors' release and the paper disagree:

- ``"release"``: every Gaussian is a 3x3 kernel (the 2-D Gaussian sampled at offsets -1, 0, 1 and
  normalised), applied with zero padding. Required to reproduce the authors' weights.
- ``"full"``: kernels of radius ``ceil(3 * sigma)`` as the paper describes, with replicate padding,
  which (unlike reflect padding) is defined for any map size, including the 1/4 octave of a small patch.

Kernel values come from :func:`kornia.filters.get_gaussian_kernel1d`. The 2-D sampled Gaussian is
separable: small kernels run as one depthwise 2-D convolution (fastest for 3x3, measured), wide ones
as two depthwise 1-D convolutions (42 instead of 441 taps for the widest full kernel); zero and
replicate padding both commute with that split.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from kornia.filters import get_gaussian_kernel1d
from torch import Tensor, nn

from ._native import dog_library, inference_maps, kernel_serves
from ._native import ops as native

KernelMode = Literal["release", "full"]
KERNEL_MODES: tuple[str, ...] = ("release", "full")

__all__ = [
    "KERNEL_MODES",
    "DoGPyramid",
    "dog_pyramid",
    "fused_kernel_serves",
    "gaussian_blur",
    "gaussian_kernels",
    "gaussian_octaves",
    "sift_sigmas",
]


def sift_sigmas(sigma: float = 1.6, intervals: int = 3, assumed_blur: float = 0.5) -> list[float]:
    r"""Blur sigmas of one SIFT octave: the pre-blur, then the incremental blurs.

    The first entry takes an input assumed to carry ``assumed_blur`` to ``sigma``:
    :math:`\sqrt{\sigma^2 - b^2}`. Entry ``i`` (1..intervals+2) takes Gaussian image ``i-1`` (total
    blur :math:`\sigma k^{i-1}`) to image ``i`` (:math:`\sigma k^i`), with :math:`k = 2^{1/intervals}`.

    Examples:
        >>> [round(s, 4) for s in sift_sigmas()]
        [1.5199, 1.2263, 1.545, 1.9466, 2.4525, 3.09]
    """
    if sigma <= assumed_blur:
        raise ValueError(f"sigma ({sigma}) must exceed the assumed input blur ({assumed_blur})")
    if intervals < 1:
        raise ValueError(f"intervals must be >= 1, got {intervals}")
    k = 2.0 ** (1.0 / intervals)
    sigmas = [math.sqrt(sigma**2 - assumed_blur**2)]
    for i in range(1, intervals + 3):
        sigmas.append(math.sqrt((sigma * k**i) ** 2 - (sigma * k ** (i - 1)) ** 2))
    return sigmas


def _kernel_size(sigma: float, mode: str) -> int:
    if mode == "release":
        return 3
    if mode == "full":
        return 2 * math.ceil(3.0 * sigma) + 1
    raise ValueError(f"unknown kernel mode {mode!r}; expected one of {KERNEL_MODES}")


def gaussian_kernels(sigmas: list[float], mode: KernelMode = "release") -> list[Tensor]:
    """Normalised 1-D Gaussian kernels, one per sigma, each of shape ``(K,)`` (K odd).

    Examples:
        >>> [k.numel() for k in gaussian_kernels([1.0, 3.0], "full")]
        [7, 19]
    """
    return [get_gaussian_kernel1d(_kernel_size(s, mode), s, dtype=torch.float64).reshape(-1) for s in sigmas]


# Kernels narrower than this run as one 2-D depthwise pass (measured for 3x3: 2.0 ms against 3.3 ms for
# two 1-D passes on 32x321x481 channels_last maps); wider ones as two 1-D passes, whose cost grows
# linearly instead of quadratically with the width. The threshold between 3 and 21 taps is not measured.
_SEPARABLE_FROM = 7


def gaussian_blur(x: Tensor, kernel: Tensor, border: Literal["zeros", "replicate"] = "zeros") -> Tensor:
    """Blur every channel of ``x`` with the separable 2-D kernel ``outer(kernel, kernel)``.

    Args:
        x: feature maps ``(B, C, H, W)``.
        kernel: 1-D kernel ``(K,)`` with K odd, normalised to sum 1.
        border: ``"zeros"`` (the authors' release) or ``"replicate"``.

    Returns:
        The blurred maps, ``(B, C, H, W)``.

    Examples:
        >>> x = torch.rand(1, 2, 5, 5)
        >>> gaussian_blur(x, torch.tensor([0.25, 0.5, 0.25])).shape
        torch.Size([1, 2, 5, 5])
    """
    if border not in ("zeros", "replicate"):
        raise ValueError(f"unknown border {border!r}; expected 'zeros' or 'replicate'")
    return _convolve(x, _depthwise_weights(kernel, x.shape[1], x.dtype, x.device), kernel.numel() // 2, border)


def _depthwise_weights(kernel: Tensor, channels: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
    """The depthwise convolution weights that blur ``channels`` maps with ``kernel``: one 2-D ``(C, 1, K, K)``
    for small kernels, else a horizontal and a vertical 1-D pass."""
    kernel = kernel.to(dtype=dtype, device=device)
    if kernel.numel() < _SEPARABLE_FROM:
        # One 2-D depthwise pass beats two 1-D passes for small kernels (one read of the maps, not two).
        return ((kernel[:, None] * kernel[None, :]).expand(channels, 1, -1, -1),)
    return kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)


def _convolve(x: Tensor, weights: tuple[Tensor, ...], radius: int, border: str) -> Tensor:
    if border == "replicate":
        x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    padding = radius if border == "zeros" else 0
    if len(weights) == 1:
        return F.conv2d(x, weights[0], padding=padding, groups=x.shape[1])
    x = F.conv2d(x, weights[0], padding=(0, padding), groups=x.shape[1])
    return F.conv2d(x, weights[1], padding=(padding, 0), groups=x.shape[1])


class _Blurs:
    """The blurs of one scale space, ``blurs(x, i)`` = ``gaussian_blur(x, kernels[i], border)``, with each kernel's
    depthwise weights built once per dtype, device and channel count and kept in ``cache`` (a :class:`DoGPyramid`
    keeps its cache across calls). Why: building them takes five small operations (cast, two unsqueezes, outer
    product, expand), which on a GPU cost a launch and a dispatch each, whatever their size: per SIAN forward that
    was 480 of its 1276 operations, for 96 blurs (the probe scripts/op_count.py, commit 8c360b5). Same weights,
    same numbers."""

    def __init__(self, kernels: list[Tensor], border: Literal["zeros", "replicate"], cache: dict | None = None):
        self.kernels, self.border = kernels, border
        self.cache = {} if cache is None else cache

    def __call__(self, x: Tensor, index: int) -> Tensor:
        kernel = self.kernels[index]
        if torch.compiler.is_compiling() or torch.jit.is_tracing():  # a graph records the weights as it builds them
            return gaussian_blur(x, kernel, self.border)
        key = (index, x.dtype, x.device, x.shape[1])
        weights = self.cache.get(key)
        if weights is None:
            # Ordinary tensors even when built under inference_mode: training reuses them after validation.
            with torch.inference_mode(False), torch.no_grad():
                weights = self.cache[key] = _depthwise_weights(kernel, x.shape[1], x.dtype, x.device)
        return _convolve(x, weights, kernel.numel() // 2, self.border)


def _border(mode: str) -> Literal["zeros", "replicate"]:
    return "zeros" if mode == "release" else "replicate"


def gaussian_octaves(
    x: Tensor, kernels: list[Tensor], octaves: int = 3, mode: KernelMode = "release"
) -> list[list[Tensor]]:
    """Gaussian images of every octave.

    Args:
        x: feature maps ``(B, C, H, W)``.
        kernels: the pre-blur kernel followed by the ``intervals + 2`` incremental kernels
            (see :func:`sift_sigmas` and :func:`gaussian_kernels`).
        octaves: number of octaves; octave ``o`` has spatial size ``(H // 2**o, W // 2**o)``.
        mode: ``"release"`` (zero padding) or ``"full"`` (replicate padding).

    Returns:
        ``octaves`` lists of ``len(kernels)`` tensors ``(B, C, H_o, W_o)``.
    """
    return _gaussian_octaves(x, _Blurs(kernels, _border(mode)), octaves)


def _gaussian_octaves(x: Tensor, blurs: _Blurs, octaves: int) -> list[list[Tensor]]:
    intervals = len(blurs.kernels) - 3
    first = blurs(x, 0)
    pyramid = []
    for octave in range(octaves):
        if octave:
            # Image `intervals` has twice the octave's base blur: subsample it to seed the next octave.
            first = F.max_pool2d(pyramid[-1][intervals], kernel_size=2, stride=2)
        images = [first]
        for index in range(1, len(blurs.kernels)):
            images.append(blurs(images[-1], index))
        pyramid.append(images)
    return pyramid


def dog_pyramid(
    x: Tensor,
    octaves: int = 3,
    intervals: int = 3,
    sigma: float = 1.6,
    mode: KernelMode = "release",
) -> list[Tensor]:
    r"""Difference-of-Gaussian stacks of every octave.

    Args:
        x: feature maps ``(B, C, H, W)``.
        octaves: number of octaves.
        intervals: scales per octave; each octave yields ``intervals + 2`` DoG maps.
        sigma: base blur of the first Gaussian image.
        mode: kernel mode, ``"release"`` or ``"full"``.

    Returns:
        One tensor per octave ``o``, shape ``(B, C * (intervals + 2), H // 2**o, W // 2**o)``: DoG map
        ``l`` (Gaussian ``l + 1`` minus Gaussian ``l``) occupies channels ``[l * C, (l + 1) * C)``.

    Examples:
        >>> [tuple(d.shape) for d in dog_pyramid(torch.rand(1, 32, 97, 83))]
        [(1, 160, 97, 83), (1, 160, 48, 41), (1, 160, 24, 20)]
    """
    return _dog_stacks(x, gaussian_kernels(sift_sigmas(sigma, intervals), mode), octaves, mode)


def _dog_stacks(
    x: Tensor, kernels: list[Tensor], octaves: int, mode: KernelMode, reuse: list[Tensor] | None = None,
    blurs: _Blurs | None = None,
) -> list[Tensor]:  # fmt: skip
    """The DoG stacks of :func:`dog_pyramid` and :class:`DoGPyramid`: concatenated differences of the whole
    pyramid where autograd records them, else streamed into (reused) stacks (:func:`_streamed_dogs`)."""
    if _fusable(x, kernels, mode):  # inference only: _fusable refuses maps that autograd records
        # A compiled graph allocates its own outputs: no stacks carried over from another call.
        return _fused_dogs(x, kernels, octaves, None if torch.compiler.is_compiling() else reuse)
    blurs = blurs or _Blurs(kernels, _border(mode))
    # Under torch.compile without the kernel too: Dynamo cannot trace the streamed path's writes into channel
    # slices (`out=`), and inductor writes the differences of the concatenation straight into the stacks anyway.
    if (torch.is_grad_enabled() and x.requires_grad) or torch.compiler.is_compiling():
        return [
            torch.cat([later - earlier for earlier, later in itertools.pairwise(images)], dim=1)
            for images in _gaussian_octaves(x, blurs, octaves)
        ]
    return _streamed_dogs(x, kernels, octaves, mode, reuse, blurs)


def fused_kernel_serves(mode: str, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the compiled kernel (sian/_native/dog.c) computes the inference stacks of this kernel mode, device
    and dtype: the release's 3x3 zero-padded blurs of float32 or bfloat16 maps on a CPU, where the kernel could
    be built. A bfloat16 map (autocast) gives a bfloat16 stack computed in float32 and rounded once.

    Examples:
        >>> fused_kernel_serves("full", torch.device("cpu"), torch.float32)
        False
    """
    return mode == "release" and kernel_serves(dog_library, device, dtype)


def _fusable(x: Tensor, kernels: list[Tensor], mode: str) -> bool:
    """Whether the compiled kernel serves this call (:func:`fused_kernel_serves`) for a channels_last map that is
    a plain tensor no one is recording. A tracer (ONNX, JIT), a fake tensor or a dispatch mode (torch's FLOP
    counter) must see the PyTorch operations: the kernel works on raw memory, invisible to them."""
    return inference_maps(x) and all(k.numel() == 3 for k in kernels) and fused_kernel_serves(mode, x.device, x.dtype)


def _fused_dogs(x: Tensor, kernels: list[Tensor], octaves: int, reuse: list[Tensor] | None = None) -> list[Tensor]:
    """The stacks of :func:`_streamed_dogs` from the compiled fused kernel (on PyTorch's OpenMP threads).

    The 2-D kernels are the ones :func:`gaussian_blur` convolves with (outer product in float32); later octaves
    start from their seed itself (an identity kernel in place of the pre-blur). The same numbers to float
    rounding (summation order); tests/test_scale_space.py compares the two paths. A bfloat16 ``x`` gives
    bfloat16 stacks: the float32 stacks of ``x.float()`` rounded once (the seeds between octaves stay float32),
    closer to float32 than PyTorch's bfloat16 blurs, which round every Gaussian image before subtracting.
    """
    planes = [(k.float()[:, None] * k.float()[None, :]).reshape(9) for k in kernels]
    identity = torch.zeros(9, dtype=torch.float32)  # the kernel reads float32 whatever torch's default dtype is
    identity[4] = 1.0
    levels, intervals = len(kernels), len(kernels) - 3
    first, later = torch.stack(planes).contiguous(), torch.stack([identity, *planes[1:]]).contiguous()
    batch, channels = x.shape[:2]
    source, stacks = x, []
    for octave in range(octaves):
        h, w = source.shape[-2:]
        stack = _stack_like(source, levels - 1, reuse[octave] if reuse and len(reuse) == octaves else None, x.dtype)
        seed = None
        if octave + 1 < octaves:
            seed_shape = (batch, channels, h // 2, w // 2)
            seed = torch.empty(seed_shape, dtype=torch.float32, memory_format=torch.channels_last)
        weights = first if octave == 0 else later
        native.dog_octave(source, weights, levels, intervals, stack, seed)
        stacks.append(stack)
        source = seed
    if reuse is not None:
        reuse[:] = stacks
    return stacks


def _streamed_dogs(
    x: Tensor, kernels: list[Tensor], octaves: int, mode: KernelMode, reuse: list[Tensor] | None = None,
    blurs: _Blurs | None = None,
) -> list[Tensor]:  # fmt: skip
    """The stacks of :func:`dog_pyramid` without autograd, the same numbers computed in a cache-friendlier order.

    Each difference is written straight into its channel slice of the stack (no concatenation copy) as soon
    as its later Gaussian exists, while both Gaussians are still in the cache, and only two Gaussians of an
    octave (and the next octave's seed) are alive at a time instead of all of them. With ``reuse``, the
    stacks of an earlier call are written over: a fresh 100 MB stack per call costs more in page faults than
    the subtractions themselves (54 ms against 15 ms at 481x321, measured).
    """
    blurs = blurs or _Blurs(kernels, _border(mode))
    intervals = len(kernels) - 3
    seed = blurs(x, 0)
    stacks = []
    for octave in range(octaves):
        stack = _stack_like(seed, len(kernels) - 1, reuse[octave] if reuse and len(reuse) == octaves else None)
        channels = seed.shape[1]
        earlier = seed
        for level in range(len(kernels) - 1):
            later = blurs(earlier, level + 1)
            torch.sub(later, earlier, out=stack[:, level * channels : (level + 1) * channels])
            if level + 1 == intervals:  # twice the octave's base blur: subsampled, it seeds the next octave
                seed = later
            earlier = later
        stacks.append(stack)
        if octave + 1 < octaves:
            seed = F.max_pool2d(seed, kernel_size=2, stride=2)
    if reuse is not None:
        reuse[:] = stacks
    return stacks


def _stack_like(first: Tensor, levels: int, old: Tensor | None, dtype: torch.dtype | None = None) -> Tensor:
    """A stack for ``levels`` differences of maps like ``first`` (in ``dtype``, default ``first``'s): ``old`` if it
    fits exactly, else a new one."""
    b, c, h, w = first.shape
    shape, layout, dtype = (b, c * levels, h, w), _memory_format(first), dtype or first.dtype
    if (
        old is not None and old.shape == shape and old.dtype == dtype and old.device == first.device
        and old.is_contiguous(memory_format=layout)
    ):  # fmt: skip
        return old
    return torch.empty(shape, dtype=dtype, device=first.device, memory_format=layout)


def _memory_format(x: Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


class DoGPyramid(nn.Module):
    """Module twin of :func:`dog_pyramid`; the kernels are fixed (non-trainable) buffers.

    Examples:
        >>> pyramid = DoGPyramid(octaves=3, intervals=3, sigma=1.6, mode="release")
        >>> [d.shape[1] for d in pyramid(torch.rand(2, 32, 16, 16))]
        [160, 160, 160]
    """

    def __init__(self, octaves: int = 3, intervals: int = 3, sigma: float = 1.6, mode: KernelMode = "release"):
        super().__init__()
        if mode not in KERNEL_MODES:
            raise ValueError(f"unknown kernel mode {mode!r}; expected one of {KERNEL_MODES}")
        self.octaves, self.intervals, self.sigma, self.mode = octaves, intervals, sigma, mode
        for i, kernel in enumerate(gaussian_kernels(sift_sigmas(sigma, intervals), mode)):
            # Kept in float64 and cast per call, so the module serves float32 and float64 alike.
            self.register_buffer(f"kernel{i}", kernel, persistent=False)
        self._blur_weights: dict = {}  # the blurs' depthwise weights per dtype, device and width (_Blurs)

    @property
    def kernels(self) -> list[Tensor]:
        return [getattr(self, f"kernel{i}") for i in range(self.intervals + 3)]

    def _blurs(self) -> _Blurs:
        return _Blurs(self.kernels, _border(self.mode), self._blur_weights)

    def gaussian_octaves(self, x: Tensor) -> list[list[Tensor]]:
        return _gaussian_octaves(x, self._blurs(), self.octaves)

    def forward(self, x: Tensor, reuse: list[Tensor] | None = None) -> list[Tensor]:
        """DoG stacks of every octave (see :func:`dog_pyramid`).

        ``reuse``: a list that carries the stacks from one call to the next without autograd (SIAN's
        stages): empty at first, it receives the stacks, which later calls of the same size write over.
        The returned stacks are then only valid until the next call.
        """
        return _dog_stacks(x, self.kernels, self.octaves, self.mode, reuse, self._blurs())

    def extra_repr(self) -> str:
        return f"octaves={self.octaves}, intervals={self.intervals}, sigma={self.sigma}, mode={self.mode!r}"
