"""SIAN: Scale-space Invariant Attention Network (Pang et al., arXiv 2006.05049).

One stage, repeated ``stages`` times with shared weights (Fig. 1 of the paper)::

    z      = input_conv(concat(rainy, x_prev))                     # Eq. (1)
    dogs   = DoG pyramid of z, one stack per octave                # Eq. (7)-(12), fixed filters
    for each level o (full, 1/2, 1/4 resolution):
        f  = feature_conv(avg_pool(z, 2**o))                        # Eq. (2)
        f  = f + f * sigmoid(attention_conv(dogs[o]))               # Eq. (3)
        f  = relu(refine_conv(f));  h_o, c_o = ConvLSTM(f, h_o, c_o) # Fig. 5, state kept across stages
    fused  = coarse-to-fine fusion of the h_o                       # Eq. (4)
    rain   = rain_head(fused)                                       # Eq. (5)
    x      = rainy - rain                                           # Eq. (6)

Where the paper is silent this follows the authors' release (see ``docs/architecture.md``).
Constructor arguments are exactly the configuration keys stored with every weight file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._native import inference_maps, kernel_serves, pyramid_library
from .._native import ops as native
from ..scale_space import KERNEL_MODES, DoGPyramid, KernelMode
from .layers import ConvLSTMCell, ResBlock, conv3x3

__all__ = ["SIAN", "attend", "pyramid_kernels_serve", "upsample_concat"]


class PyramidLevel(nn.Module):
    """One resolution of the feature pyramid: features, DoG attention, refinement, ConvLSTM."""

    def __init__(self, channels: int, dog_channels: int, attention: bool, recurrent: bool):
        super().__init__()
        self.feature_conv = conv3x3(channels, channels)
        self.attention_conv = conv3x3(dog_channels, channels) if attention else None
        self.refine_conv = conv3x3(channels, channels)
        self.lstm = ConvLSTMCell(channels, channels) if recurrent else None

    def forward(
        self, pooled: Tensor, dogs: Tensor | None, state: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        features = self.feature_conv(pooled)
        if self.attention_conv is not None:
            features = attend(features, self.attention_conv(dogs))  # F + F * sigmoid(conv(DoG)), Eq. (3)
        features = F.relu(self.refine_conv(features), inplace=True)
        if self.lstm is None:
            return features, None
        state = self.lstm(features, state)
        return state[0], state


class CoarseToFine(nn.Module):
    """Fuse a coarser map into a finer one: bilinear x2 (align_corners), zero-pad to size, conv, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(2 * channels, channels)

    def forward(self, fine: Tensor, coarse: Tensor) -> Tensor:
        return F.relu(self.conv(upsample_concat(fine, coarse)), inplace=True)


class SIAN(nn.Module):
    """Scale-space Invariant Attention Network.

    Args:
        channels: feature channels throughout (32 in the paper).
        stages: number of recurrent stages, weights shared (6 in the paper).
        octaves: pyramid levels and scale-space octaves (full, 1/2, 1/4 for 3).
        intervals: scales per octave; the attention sees ``intervals + 2`` DoG maps per octave.
        sigma: base blur of the scale space (1.6).
        kernel_mode: ``"release"`` (the authors' 3x3 Gaussians, needed for their weights) or
            ``"full"`` (kernels of radius ~3 sigma, as the paper describes).
        attention: use the DoG attention masks (``False``: ``M = 0``, the paper's ablations).
        recurrent: ConvLSTM at every level, its state carried across stages (``False``: none).
        head_blocks: residual blocks of the rain-layer head (2).

    Shape:
        - input: rainy RGB ``(B, 3, H, W)`` in [0, 1], any ``H, W >= 2**(octaves - 1)``.
        - output: in training mode (or ``return_all=True``) a list of the ``stages`` derained
          estimates, each ``(B, 3, H, W)``; otherwise the last one.

    Examples:
        >>> model = SIAN(channels=8, stages=2).eval()
        >>> model(torch.rand(1, 3, 33, 30)).shape
        torch.Size([1, 3, 33, 30])
    """

    def __init__(
        self,
        channels: int = 32,
        stages: int = 6,
        octaves: int = 3,
        intervals: int = 3,
        sigma: float = 1.6,
        kernel_mode: KernelMode = "release",
        attention: bool = True,
        recurrent: bool = True,
        head_blocks: int = 2,
    ):
        super().__init__()
        if kernel_mode not in KERNEL_MODES:
            raise ValueError(f"unknown kernel_mode {kernel_mode!r}; expected one of {KERNEL_MODES}")
        if stages < 1 or octaves < 1:
            raise ValueError(f"stages and octaves must be >= 1, got {stages} and {octaves}")
        self.config = dict(
            channels=channels, stages=stages, octaves=octaves, intervals=intervals, sigma=sigma,
            kernel_mode=kernel_mode, attention=attention, recurrent=recurrent, head_blocks=head_blocks,
        )  # fmt: skip
        self.stages = stages
        self.input_conv = conv3x3(6, channels)
        self.scale_space = DoGPyramid(octaves, intervals, sigma, kernel_mode) if attention else None
        dog_channels = channels * (intervals + 2)
        self.levels = nn.ModuleList(PyramidLevel(channels, dog_channels, attention, recurrent) for _ in range(octaves))
        self.fusions = nn.ModuleList(CoarseToFine(channels) for _ in range(octaves - 1))
        self.rain_head = nn.Sequential(*(ResBlock(channels) for _ in range(head_blocks)), conv3x3(channels, 3))

    @property
    def min_size(self) -> int:
        """Smallest height and width the pyramid takes: the coarsest octave must keep a pixel."""
        return 2 ** (len(self.levels) - 1)

    def forward(self, rainy: Tensor, return_all: bool | None = None) -> Tensor | list[Tensor]:
        _check_input(rainy, min_size=self.min_size)
        states: list[tuple[Tensor, Tensor] | None] = [None] * len(self.levels)
        dog_buffers: list[Tensor] = []  # the stages' DoG stacks share memory when no gradient is kept
        derained = rainy
        outputs = []
        for _ in range(self.stages):
            derained = rainy - self.stage(rainy, derained, states, dog_buffers)
            outputs.append(derained)
        return outputs if (self.training if return_all is None else return_all) else outputs[-1]

    def stage(self, rainy: Tensor, previous: Tensor, states: list, dog_buffers: list | None = None) -> Tensor:
        """One stage: returns the rain layer ``R`` and updates the per-level ConvLSTM ``states``.

        ``dog_buffers`` (optional, see :meth:`DoGPyramid.forward`) lets successive stages reuse the DoG stacks.
        """
        z = self.input_conv(torch.cat([rainy, previous], dim=1))
        dogs = self.scale_space(z, dog_buffers) if self.scale_space is not None else [None] * len(self.levels)
        hidden = []
        for octave, level in enumerate(self.levels):
            pooled = F.avg_pool2d(z, 2**octave) if octave else z
            h, states[octave] = level(pooled, dogs[octave], states[octave])
            hidden.append(h)
        fused = hidden[-1]
        for octave in reversed(range(len(self.fusions))):
            fused = self.fusions[octave](hidden[octave], fused)
        return self.rain_head(fused)


def _check_input(x: Tensor, min_size: int) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a batch of RGB images (B, 3, H, W), got shape {tuple(x.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"image {x.shape[-1]}x{x.shape[-2]} is smaller than the minimum {min_size}x{min_size}")


# The two pyramid steps a compiled kernel serves for CPU inference (sian/_native/pyramid.c).


def pyramid_kernels_serve(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether :func:`attend` and :func:`upsample_concat` run as compiled kernels (sian/_native/pyramid.c) for
    inference on this device and dtype: float32 or bfloat16 (autocast) on a CPU, where they could be built.

    Examples:
        >>> pyramid_kernels_serve(torch.device("cpu"), torch.float64)
        False
    """
    return kernel_serves(pyramid_library, device, dtype)


def attend(features: Tensor, logits: Tensor) -> Tensor:
    """Eq. (3): ``F + F * M`` with the importance mask ``M = sigmoid(logits)``.

    For inference on a CPU (channels_last float32 or bfloat16 maps) one pass of a compiled kernel; otherwise
    PyTorch's operations, the sigmoid in place over ``logits`` (the convolution's backward keeps no output).

    Shape:
        - features, logits: ``(B, C, H, W)``; returns ``(B, C, H, W)``.

    Examples:
        >>> attend(torch.ones(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))[0, 0, 0, 0].item()
        1.5
    """
    if (
        inference_maps(features, logits)
        and features.shape == logits.shape
        and pyramid_kernels_serve(features.device, features.dtype)
    ):
        out = torch.empty_like(features)
        native.attend(features, logits, out)
        return out
    return torch.addcmul(features, features, logits.sigmoid_())


def upsample_concat(fine: Tensor, coarse: Tensor) -> Tensor:
    """The input of a coarse-to-fine fusion (Eq. 4): ``concat(fine, pad(up(coarse)))``, ``up`` a bilinear x2 with
    align_corners and ``pad`` zeros up to the fine size, ``floor(d / 2)`` before and the rest after (an odd fine
    size leaves the upsampled map one pixel short).

    For inference on a CPU (channels_last float32 or bfloat16 maps, fine at least twice coarse) one pass of a
    compiled kernel writes the concatenation; otherwise PyTorch's upsampling, padding and concatenation.

    Shape:
        - fine: ``(B, C, H, W)``; coarse: ``(B, C, h, w)``; returns ``(B, 2C, H, W)``.

    Examples:
        >>> upsample_concat(torch.zeros(1, 2, 7, 5), torch.ones(1, 2, 3, 2)).shape
        torch.Size([1, 4, 7, 5])
    """
    (height, width), (h, w) = fine.shape[-2:], coarse.shape[-2:]
    if (
        inference_maps(fine, coarse) and fine.shape[:2] == coarse.shape[:2] and height >= 2 * h and width >= 2 * w
        and pyramid_kernels_serve(fine.device, fine.dtype)
    ):  # fmt: skip
        batch, channels = fine.shape[:2]
        out = torch.empty(batch, 2 * channels, height, width, dtype=fine.dtype, memory_format=torch.channels_last)
        native.upsample_concat(fine, coarse, out)
        return out
    up = F.interpolate(coarse, size=(2 * h, 2 * w), mode="bilinear", align_corners=True)
    dh, dw = height - up.shape[-2], width - up.shape[-1]
    # When exporting, pad unconditionally: a branch on the traced size would be frozen into the graph.
    if dh or dw or torch.compiler.is_compiling():
        up = F.pad(up, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
    return torch.cat([fine, up], dim=1)
