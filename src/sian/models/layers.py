"""Building blocks shared by the architectures: 3x3 convolutions, residual blocks, the ConvLSTM cell."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._native import convlstm_library, inference_maps, kernel_serves
from .._native import ops as native

__all__ = ["ConvLSTMCell", "ResBlock", "compiled_update_serves", "conv3x3"]


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution, stride 1, padding 1: the only convolution SIAN and PReNet use."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class ResBlock(nn.Module):
    """``relu(x + relu(conv2(relu(conv1(x)))))``: the residual block of SIAN's head and of PReNet.

    Examples:
        >>> ResBlock(8)(torch.rand(1, 8, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.relu(self.conv2(self.relu(self.conv1(x)))))


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell (Shi et al., 2015) with all four gates from one convolution.

    Written here because no maintained package provides a ConvLSTM cell. The gates are computed
    by a single convolution over ``concat(x, h)`` with ``4 * hidden`` outputs in the order
    input, forget, cell candidate, output. That is the same function as separate input-to-gate and
    hidden-to-gate convolutions (their weights concatenate along the input channels, their biases
    add), in one pass instead of eight. For inference on a CPU the update after the gate convolution
    runs as one compiled pass (``sian/_native/convlstm.c``) instead of six PyTorch operations, the same
    to float rounding.

    Args:
        in_channels: channels of the input ``x``.
        hidden_channels: channels of ``h`` and ``c``.

    Shape:
        - x: ``(B, in_channels, H, W)``; state: ``None`` (zeros) or ``(h, c)``, each
          ``(B, hidden_channels, H, W)``.
        - returns ``(h, c)``.

    Examples:
        >>> cell = ConvLSTMCell(4, 8)
        >>> h, c = cell(torch.rand(2, 4, 6, 6))
        >>> h, c = cell(torch.rand(2, 4, 6, 6), (h, c))
        >>> h.shape
        torch.Size([2, 8, 6, 6])
    """

    def __init__(self, in_channels: int, hidden_channels: int):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = conv3x3(in_channels + hidden_channels, 4 * hidden_channels)
        # tanh(g) = 2 sigmoid(2 g) - 1: with the candidate's weights doubled on the fly, the one sigmoid over
        # all four gates also gives the candidate. tanh costs 3-4x a sigmoid per element on the CPU, and on
        # a channel slice of a channels_last tensor 2x more again: 5% of a SIAN or PReNet inference
        # (benchmarks/profile_step.py ... infer). The function is the same (outputs within 2.4e-7).
        scale = torch.ones(4 * hidden_channels)
        scale[2 * hidden_channels : 3 * hidden_channels] = 2.0
        self.register_buffer("_gate_scale", scale, persistent=False)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        scale = self._gate_scale.to(self.gates.weight.dtype)
        weight, bias = self.gates.weight * scale.view(-1, 1, 1, 1), self.gates.bias * scale
        if state is None:
            # Zero state: the hidden half of the convolution and the forget gate contribute nothing,
            # so the first step convolves x alone (half the work) and starts the cell at i * g.
            gates = F.conv2d(x, weight[:, : x.shape[1]], bias, padding=1)
        else:
            gates = F.conv2d(torch.cat([x, state[0]], dim=1), weight, bias, padding=1)
        if _fusable(gates, state):
            return _fused_update(gates, None if state is None else state[1])
        # One in-place sigmoid over the whole (contiguous) gate tensor: its slices then hold sigmoid(i),
        # sigmoid(f), sigmoid(2 g) and sigmoid(o). Unary ops on channel slices of a channels_last tensor are
        # strided and 2-3x slower (measured). In place is safe under autograd: the convolution's backward
        # needs its inputs, not its output, and the ops below only read the slices.
        i, f, s, o = gates.sigmoid_().chunk(4, dim=1)
        if state is None:  # i * g = i * (2 s - 1)
            cell = torch.mul(i, s).mul_(2).sub_(i)
        else:  # f * c + i * g = f * c - i + 2 i s
            cell = torch.mul(f, state[1]).sub_(i).addcmul_(i, s, value=2)
        hidden = o * torch.tanh(cell)
        return hidden, cell


def compiled_update_serves(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the compiled ConvLSTM update (sian/_native/convlstm.c) computes inference on this device and gate
    dtype: float32 or bfloat16 (autocast) on a CPU, where the kernel could be built.

    Examples:
        >>> compiled_update_serves(torch.device("cpu"), torch.float64)
        False
    """
    return kernel_serves(convlstm_library, device, dtype)


def _fusable(gates: Tensor, state: tuple[Tensor, Tensor] | None) -> bool:
    """Whether the compiled update serves this call (:func:`compiled_update_serves`): inference (nothing for
    autograd to record), gates in channels_last, a cell state of the same dtype, layout and size."""
    tensors = (gates,) if state is None else (gates, state[1])
    return (
        inference_maps(*tensors)
        and (state is None or state[1].shape == (gates.shape[0], gates.shape[1] // 4, *gates.shape[2:]))
        and compiled_update_serves(gates.device, gates.dtype)
    )  # fmt: skip


def _fused_update(gates: Tensor, cell: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(hidden, cell)`` from the gate pre-activations in one pass of the compiled kernel: the same function as
    :meth:`ConvLSTMCell.forward`'s PyTorch operations (within ~1e-6 in float32), computed in float32 and, for
    bfloat16 gates, rounded once instead of after every operation."""
    batch, channels, height, width = gates.shape[0], gates.shape[1] // 4, *gates.shape[2:]
    hidden = torch.empty(batch, channels, height, width, dtype=gates.dtype, memory_format=torch.channels_last)
    new_cell = torch.empty_like(hidden)
    native.convlstm_update(gates, cell, new_cell, hidden)
    return hidden, new_cell
