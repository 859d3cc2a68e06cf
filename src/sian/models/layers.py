"""Building blocks shared by the architectures: 3x3 convolutions, residual blocks, the ConvLSTM cell."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvLSTMCell", "ResBlock", "conv3x3"]


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution, stride 1, padding 1: the only convolution SIAN and PReNet use."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class ResBlock(nn.Module):
    """``relu(x + relu(conv2(relu(conv1(x)))))``: the residual block of SIAN's head and of PReNet.

    Example:
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
    add), in one pass instead of eight.

    Args:
        in_channels: channels of the input ``x``.
        hidden_channels: channels of ``h`` and ``c``.

    Shape:
        - x: ``(B, in_channels, H, W)``; state: ``None`` (zeros) or ``(h, c)``, each
          ``(B, hidden_channels, H, W)``.
        - returns ``(h, c)``.

    Example:
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

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if state is None:
            # Zero state: the hidden half of the convolution and the forget gate contribute nothing,
            # so the first step convolves x alone (half the work) and starts the cell at i * g.
            gates = F.conv2d(x, self.gates.weight[:, : x.shape[1]], self.gates.bias, padding=1)
        else:
            gates = self.gates(torch.cat([x, state[0]], dim=1))
        # Gate activations in two passes instead of four: tanh of the candidate first, then one in-place
        # sigmoid over the whole (contiguous) gate tensor, whose slices i, f, o then hold their sigmoids.
        # Unary ops on channel slices of a channels_last tensor are strided and 2-3x slower (measured).
        # In place is safe under autograd: the convolution's backward needs its inputs, not its output.
        n = self.hidden_channels
        candidate = torch.tanh(gates[:, 2 * n : 3 * n])
        i, f, _, o = gates.sigmoid_().chunk(4, dim=1)
        cell = i * candidate if state is None else torch.addcmul(f * state[1], i, candidate)
        hidden = o * torch.tanh(cell)
        return hidden, cell
