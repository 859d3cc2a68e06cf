"""Would computing SIAN's DoG pyramid in bands of rows make inference faster? Measured and dropped (issue 16).

    python scripts/dog_band_probe.py [THREADS] [TURNS] [ROWS]

The idea: blur and difference each octave band by band (with a halo as wide as the chain of blurs reaches,
so the numbers stay bit-identical) so that a band's Gaussians are still in the cache when the next blur
and the difference read them. Checks the bands against the library's whole maps bit for bit, then times,
in alternating turns in one process, (1) one stage's pyramid on a 32-channel 481x321 map and (2) a whole
SIAN inference at 481x321 with the library's pyramid and with the banded one patched in. Prints the median
per-turn ratios banded/whole. docs/benchmarks.md quotes it; pause any training first.
"""

from __future__ import annotations

import statistics
import sys

import torch
import torch.nn.functional as F
from torch import Tensor

from sian._allocator import keep_freed_memory
from sian.benchmark import interleaved_times
from sian.models import create_model
from sian.precision import describe_machine
from sian.scale_space import DoGPyramid, _border, _memory_format, _stack_like, gaussian_blur


def banded_dogs(x: Tensor, kernels: list[Tensor], octaves: int, mode: str, reuse: list, rows: int) -> list[Tensor]:
    """The streamed DoG stacks (``sian.scale_space._streamed_dogs``) computed in bands of ``rows`` (even) rows."""
    border, intervals = _border(mode), len(kernels) - 3
    reach = [k.numel() // 2 for k in kernels]
    source, stacks = x, []
    for octave in range(octaves):
        b, c, h, w = source.shape
        stack = _stack_like(source, len(kernels) - 1, reuse[octave] if len(reuse) == octaves else None)
        seed = None
        if octave + 1 < octaves:
            seed = torch.empty((b, c, h // 2, w // 2), dtype=x.dtype, memory_format=_memory_format(source))
        halo = sum(reach) if octave == 0 else sum(reach[1:])
        for top in range(0, h, rows):
            bottom = min(h, top + rows)
            first, last = max(0, top - halo), min(h, bottom + halo)
            own = slice(top - first, bottom - first)
            earlier = source[:, :, first:last]
            if octave == 0:
                earlier = gaussian_blur(earlier, kernels[0], border)
            for level, kernel in enumerate(kernels[1:]):
                later = gaussian_blur(earlier, kernel, border)
                torch.sub(later[:, :, own], earlier[:, :, own], out=stack[:, level * c : (level + 1) * c, top:bottom])
                if seed is not None and level + 1 == intervals and bottom // 2 > top // 2:
                    seed[:, :, top // 2 : bottom // 2] = F.max_pool2d(later[:, :, own], kernel_size=2, stride=2)
                earlier = later
        stacks.append(stack)
        source = seed
    reuse[:] = stacks
    return stacks


def alternate(runs: dict, turns: int) -> float:
    """Median per-turn ratio second/first of two callables timed in alternating order."""
    first, second = interleaved_times(runs, warmup=0, repeats=turns).values()
    return statistics.median(b / a for a, b in zip(first, second, strict=True))


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    turns = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 96
    torch.set_num_threads(threads)
    keep_freed_memory()
    pyramid = DoGPyramid()
    library = DoGPyramid.forward

    def banded(self, x, reuse=None):
        return banded_dogs(x, self.kernels, self.octaves, self.mode, reuse if reuse is not None else [], rows)

    features = torch.randn(1, 32, 321, 481).contiguous(memory_format=torch.channels_last)
    image = torch.rand(1, 3, 321, 481).contiguous(memory_format=torch.channels_last)
    model = create_model("sian").eval().to(memory_format=torch.channels_last)
    whole_stacks, band_stacks = [], []
    with torch.inference_mode():
        for a, b in zip(pyramid(features, whole_stacks), banded(pyramid, features, band_stacks), strict=True):
            assert torch.equal(a, b), "bands changed the numbers"
        reference = model(image)
        DoGPyramid.forward = banded
        assert torch.equal(model(image), reference), "bands changed SIAN's output"
        DoGPyramid.forward = library
        pyramid_ratio = alternate(
            {"whole": lambda: pyramid(features, whole_stacks), "bands": lambda: banded(pyramid, features, band_stacks)},
            3 * turns,
        )

        def with_forward(forward):
            def run():
                DoGPyramid.forward = forward
                model(image)

            return run

        model_ratio = alternate({"whole": with_forward(library), "bands": with_forward(banded)}, turns)
        DoGPyramid.forward = library
    print(f"{describe_machine()}, {threads} threads, bands of {rows} rows")
    print(f"one stage's pyramid, banded/whole: {pyramid_ratio:.3f} (median of {3 * turns} turns)")
    print(f"SIAN inference at 481x321, banded/whole: {model_ratio:.3f} (median of {turns} turns)")


if __name__ == "__main__":
    main()
