"""Training losses over every stage's output (the paper's Eq. 13 and the Table II alternatives)."""

from __future__ import annotations

import torch.nn.functional as F
from kornia.metrics import ssim
from torch import Tensor, nn

__all__ = ["LOSSES", "StageLoss", "stage_loss"]

LOSSES = ("ssim", "mae", "mse")


def stage_loss(outputs: list[Tensor], target: Tensor, kind: str = "ssim") -> Tensor:
    """Sum over stages of a per-stage loss, each averaged over the batch.

    - ``"ssim"``: ``-SSIM(x_t, clean)`` (Eq. 13): 11x11 Gaussian window, sigma 1.5, C1 = 0.01^2,
      C2 = 0.03^2 on [0, 1] RGB, averaged over the valid region (kornia's SSIM). Its minimum is
      ``-len(outputs)``.
    - ``"mae"`` / ``"mse"``: mean absolute / squared error per stage.

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 3, 16, 16)
        >>> round(stage_loss([x, x], x).item(), 4)
        -2.0
    """
    if kind == "ssim":
        return -sum(ssim(out, target, 11, max_val=1.0, padding="valid").mean() for out in outputs)
    if kind == "mae":
        return sum(F.l1_loss(out, target) for out in outputs)
    if kind == "mse":
        return sum(F.mse_loss(out, target) for out in outputs)
    raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")


class StageLoss(nn.Module):
    """Module twin of :func:`stage_loss`."""

    def __init__(self, kind: str = "ssim"):
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")
        self.kind = kind

    def forward(self, outputs: list[Tensor], target: Tensor) -> Tensor:
        return stage_loss(outputs, target, self.kind)
