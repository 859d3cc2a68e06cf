"""The compiled kernels as PyTorch custom operators (``torch.ops.sian.*``).

Called through these, a kernel is one operation that ``torch.compile`` and ``torch.export`` can place in a graph
(each writes into output tensors it is given, so it needs no shape rule of its own) instead of a raw-memory call
they would have to avoid. Importing this module defines them in the ``sian`` namespace of PyTorch's operator
registry (as torchvision defines ``torchvision::nms``); calling one where its kernel was not built fails, so the
models call them only where :func:`sian._native.kernel_serves` says the kernel serves.

Eager calls skip the operator and call the kernel itself: a custom operator's first call imports
``torch._dynamo`` (PyTorch wraps every operator implementation in ``torch._dynamo.disable``), over a second of
start-up that a one-shot ``sian derain`` would pay for nothing. Only a graph that ``torch.compile`` traces holds
the operators.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import convlstm_library, dog_library, pyramid_library

__all__ = ["attend", "convlstm_update", "dog_octave", "upsample_concat"]


def _dog_octave(source: Tensor, weights: Tensor, levels: int, intervals: int, stack: Tensor,
                seed: Tensor | None) -> None:  # fmt: skip
    """One octave's DoG stack from ``source`` (and the next octave's ``seed``): ``sian_dog_octave``."""
    batch, channels, height, width = source.shape
    status = dog_library().sian_dog_octave(
        source.data_ptr(), source.dtype == torch.bfloat16, batch, height, width, channels, weights.data_ptr(),
        levels, intervals, stack.data_ptr(), stack.dtype == torch.bfloat16,
        None if seed is None else seed.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise MemoryError("the fused DoG kernel could not allocate its row buffers")


def _convlstm_update(gates: Tensor, cell: Tensor | None, new_cell: Tensor, hidden: Tensor) -> None:
    """``hidden`` and ``new_cell`` from the gate pre-activations: ``sian_convlstm_update``."""
    batch, channels, height, width = hidden.shape
    convlstm_library().sian_convlstm_update(
        gates.data_ptr(), None if cell is None else cell.data_ptr(), new_cell.data_ptr(), hidden.data_ptr(),
        gates.dtype == torch.bfloat16, batch * height * width, channels, torch.get_num_threads(),
    )  # fmt: skip


def _attend(features: Tensor, logits: Tensor, out: Tensor) -> None:
    """``out = features + features * sigmoid(logits)``: ``sian_attend``."""
    pyramid_library().sian_attend(
        features.data_ptr(), logits.data_ptr(), out.data_ptr(), features.dtype == torch.bfloat16,
        features.numel(), torch.get_num_threads(),
    )  # fmt: skip


def _upsample_concat(fine: Tensor, coarse: Tensor, out: Tensor) -> None:
    """``out = concat(fine, pad(up(coarse)))``: ``sian_upsample_concat``."""
    batch, channels, height, width = fine.shape
    h, w = coarse.shape[-2:]
    pyramid_library().sian_upsample_concat(
        fine.data_ptr(), coarse.data_ptr(), out.data_ptr(), fine.dtype == torch.bfloat16,
        batch, height, width, h, w, channels, torch.get_num_threads(),
    )  # fmt: skip


def _operator_or_kernel(kernel, mutates_args: tuple[str, ...]):
    """``kernel`` registered as the operator ``sian::<name>``, and the function the models call: the operator
    inside a graph torch.compile traces, the kernel itself otherwise (the same call, without the dispatcher)."""
    operator = torch.library.custom_op(f"sian::{kernel.__name__[1:]}", kernel, mutates_args=mutates_args,
                                       device_types="cpu")  # fmt: skip

    def call(*args) -> None:
        (operator if torch.compiler.is_compiling() else kernel)(*args)

    call.__name__, call.__doc__, call.operator = kernel.__name__[1:], kernel.__doc__, operator
    return call


dog_octave = _operator_or_kernel(_dog_octave, ("stack", "seed"))
convlstm_update = _operator_or_kernel(_convlstm_update, ("new_cell", "hidden"))
attend = _operator_or_kernel(_attend, ("out",))
upsample_concat = _operator_or_kernel(_upsample_concat, ("out",))
