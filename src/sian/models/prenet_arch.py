"""PReNet: Progressive Recurrent Network (Ren et al., CVPR 2019), the baseline SIAN is compared with.

One stage, repeated ``stages`` times with shared weights::

    z       = relu(input_conv(concat(rainy, x_prev)))
    h, c    = ConvLSTM(z, (h, c))          # state kept across stages
    x       = rainy + output_conv(res_blocks(h))   # PReNet ADDS to the input; SIAN subtracts a rain layer

Constructor arguments are exactly the configuration keys stored with every weight file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ConvLSTMCell, ResBlock, conv3x3
from .sian_arch import _check_input

__all__ = ["PReNet"]


class PReNet(nn.Module):
    """Progressive recurrent deraining network.

    Args:
        channels: feature channels (32).
        stages: recurrent stages, weights shared (6).
        res_blocks: residual blocks per stage (5).
        recurrent: ConvLSTM across stages (``False`` gives the paper's PRN variant).

    Shape:
        - input: rainy RGB ``(B, 3, H, W)`` in [0, 1].
        - output: a list of ``stages`` estimates in training mode (or ``return_all=True``), else the last.

    Examples:
        >>> PReNet(channels=8, stages=2).eval()(torch.rand(1, 3, 9, 7)).shape
        torch.Size([1, 3, 9, 7])
    """

    def __init__(self, channels: int = 32, stages: int = 6, res_blocks: int = 5, recurrent: bool = True):
        super().__init__()
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.config = dict(channels=channels, stages=stages, res_blocks=res_blocks, recurrent=recurrent)
        self.stages = stages
        self.input_conv = conv3x3(6, channels)
        self.lstm = ConvLSTMCell(channels, channels) if recurrent else None
        self.res_blocks = nn.Sequential(*(ResBlock(channels) for _ in range(res_blocks)))
        self.output_conv = conv3x3(channels, 3)

    def forward(self, rainy: Tensor, return_all: bool | None = None) -> Tensor | list[Tensor]:
        _check_input(rainy, min_size=1)
        state = None
        derained = rainy
        outputs = []
        for _ in range(self.stages):
            features = F.relu(self.input_conv(torch.cat([rainy, derained], dim=1)), inplace=True)
            if self.lstm is not None:
                state = self.lstm(features, state)
                features = state[0]
            derained = rainy + self.output_conv(self.res_blocks(features))
            outputs.append(derained)
        return outputs if (self.training if return_all is None else return_all) else outputs[-1]
