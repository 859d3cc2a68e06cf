"""Tiled inference: any image size in bounded memory.

The image is cut into overlapping tiles, each tile is derained on its own, and the overlaps are
cross-faded with linear ramps, so no seam shows. Tile origins are multiples of ``align``: the model's
``min_size`` (4 for SIAN's 1/4-resolution level), which keeps every tile's pooling grid on the whole
image's grid. Tiles are accumulated on the device they come back on (float64 on the CPU, float32 on
accelerators, where float64 is slow), so a GPU run never copies a tile to the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["DEFAULT_OVERLAP", "blend_weights", "tile_starts", "tiled_apply"]

# The one default overlap, for the library and every command: 64 pixels keep tiled Rain100L within 0.02 dB of
# whole images even with 256-pixel tiles (docs/results.md). The tile size is the caller's; `sian.inference.auto_tile`
# picks it from a memory budget.
DEFAULT_OVERLAP = 64


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """``(start, size)`` of tiles covering ``[0, length)``, neighbours sharing at least ``overlap`` pixels.

    The fewest tiles of at most about ``tile`` pixels, spread evenly: equal sizes and strides, the last tile
    flush with the border. (``tile``-sized tiles with the last one pushed back to the border derain up to a
    whole extra tile per row: 1.75x the pixels of a 4000x3000 photo for 1024-pixel tiles, against 1.16x.) Every start
    is a multiple of ``align``, and a tile may exceed ``tile`` by up to ``align - 1`` pixels to stay on that
    grid; where the grid is too coarse for an even spread, the fixed-size layout is used if it derains less.

    Examples:
        >>> tile_starts(600, 256, 32, align=4)
        [(0, 224), (188, 224), (376, 224)]
        >>> tile_starts(321, 256, 64, align=4)
        [(0, 193), (128, 193)]
    """
    if length < tile + align:
        return [(0, length)]
    if overlap >= tile:
        raise ValueError(f"tile overlap ({overlap}) must be smaller than the tile ({tile})")
    stride = max(align, (tile - overlap) // align * align)
    last = (length - tile) // align * align
    fixed = [*((start, tile) for start in range(0, last, stride)), (last, length - last)]
    count = math.ceil((length - overlap) / (tile - overlap))
    for tiles in range(count, count + 8):  # flooring the stride to the grid may take a tile more
        stride = (length - overlap) // tiles // align * align  # so that tiles * stride + overlap <= length
        size = length - (tiles - 1) * stride  # every tile this size, the last one ending at the border
        if stride >= align and size < tile + align:
            even = [(i * stride, size) for i in range(tiles)]
            return even if tiles * size <= sum(fixed_size for _, fixed_size in fixed) else fixed
    return fixed


def blend_weights(size: int, start: int, length: int, ramp: int) -> Tensor:
    """1-D weights of one tile: 1 inside, a linear ramp over ``ramp`` pixels at edges shared with a neighbour."""
    weights = torch.ones(size, dtype=torch.float64)
    if ramp <= 0:
        return weights
    ramp_up = (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp
    if start > 0:
        weights[:ramp] = ramp_up[: min(ramp, size)]
    if start + size < length:
        weights[-ramp:] = torch.minimum(weights[-ramp:], ramp_up.flip(0)[-min(ramp, size) :])
    return weights


def tiled_apply(
    fn: Callable[[Tensor], Tensor], image: Tensor, tile: int, overlap: int = DEFAULT_OVERLAP,
    align: int = 1,
) -> Tensor:  # fmt: skip
    """Apply an image-to-image function ``fn`` tile by tile and cross-fade the overlaps.

    Args:
        fn: maps ``(B, C, h, w)`` to ``(B, C', h, w)``.
        image: ``(B, C, H, W)``.
        tile: tile height and width.
        overlap: pixels shared by neighbouring tiles (the cross-fade width).
        align: tile origins are multiples of this (where the image size allows): the model's ``min_size``.

    Returns:
        ``(B, C', H, W)``, equal to ``fn(image)`` where every tile sees the whole image.

    Examples:
        >>> x = torch.rand(1, 3, 70, 90)
        >>> torch.allclose(tiled_apply(lambda t: t * 2, x, tile=32, overlap=8), x * 2)
        True
    """
    _, _, height, width = image.shape
    ys, xs = tile_starts(height, tile, overlap, align), tile_starts(width, tile, overlap, align)
    if len(ys) == 1 and len(xs) == 1:
        return fn(image)
    output = weight_sum = None
    for y, th in ys:
        for x, tw in xs:
            result = fn(image[:, :, y : y + th, x : x + tw])
            if output is None:
                dtype = torch.float64 if result.device.type == "cpu" else torch.float32
                output = torch.zeros(*result.shape[:2], height, width, dtype=dtype, device=result.device)
                weight_sum = torch.zeros(1, 1, height, width, dtype=dtype, device=result.device)
            wy = blend_weights(th, y, height, overlap).to(output)
            wx = blend_weights(tw, x, width, overlap).to(output)
            weight = (wy[:, None] * wx[None, :])[None, None]
            output[:, :, y : y + th, x : x + tw] += result.to(output.dtype) * weight
            weight_sum[:, :, y : y + th, x : x + tw] += weight
    return output.div_(weight_sum).to(dtype=image.dtype, device=image.device)  # in place: no third full-size map
