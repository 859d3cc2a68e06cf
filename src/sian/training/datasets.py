"""Training samples addressed by a global sample index, so that training is reproducible and resumable.

Sample ``i`` of a run is a pure function of ``(seed, i)``: step ``s`` of a global batch ``B`` uses
samples ``s*B .. s*B+B-1``, and :class:`StepSampler` hands each torchrun process its share of them.
Resuming at step ``s`` therefore sees exactly the batches the uninterrupted run would have seen, and a
2-process run sees the same global batches as a 1-process run.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ..data import Pair, find_pairs
from ..io import IMAGE_EXTENSIONS, list_images, quantize, read_image, to_tensor
from ..synth import StreakBankRain, add_rain, sample_rain_params
from .config import DataConfig

__all__ = [
    "MixedPatches",
    "PairedPatches",
    "StepSampler",
    "SyntheticPatches",
    "clean_split",
    "dataset_of",
    "list_clean_images",
    "pairs_of",
    "read_exclusions",
    "read_pair_names",
    "split_holdout",
    "split_pairs",
]

HOLDOUT_SEED = 20_061_005  # the hold-out draw is fixed per file list, whatever the training seed


@functools.lru_cache(maxsize=512)  # the 400 images of a 200-pair training set (~190 MB) fit
def _cached_image(path: str) -> np.ndarray:
    return read_image(path)


def read_exclusions(files: list[str]) -> set[str]:
    """Stems of every image named anywhere in the given list files (any column; '#' starts a comment).

    So both a plain list of file names and a table such as BSDS500's
    ``OVERLAP_with_Rain100LH_test_backgrounds.tsv`` (Rain100 name, matching BSDS500 path) work.
    """
    stems: set[str] = set()
    for file in files:
        for line in Path(file).read_text().splitlines():
            for token in line.split("#", 1)[0].replace(",", " ").split():
                if Path(token).suffix.lower() in IMAGE_EXTENSIONS:
                    stems.add(Path(token).stem)
    return stems


def list_clean_images(folders: list[str], exclude: set[str] = frozenset(), min_size: int = 0) -> list[Path]:
    """Images under ``folders`` (recursively), minus excluded stems and images smaller than ``min_size``."""
    files = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"clean image folder not found: {root}")
        files += [p for p in list_images(root, recursive=True) if p.stem not in exclude]
    if min_size:
        kept = []
        for path in files:
            with Image.open(path) as image:
                if min(image.size) >= min_size:
                    kept.append(path)
        files = kept
    if not files:
        raise ValueError(f"no usable clean images in {folders}")
    return files


def split_holdout(files: list[Path], count: int) -> tuple[list[Path], list[Path]]:
    """Split ``files`` into ``(train, held_out)`` with ``count`` files held out by a fixed seeded draw.

    Examples:
        >>> files = [Path(f"{i}.png") for i in range(10)]
        >>> train, held = split_holdout(files, 3)
        >>> len(train), len(held), set(train).isdisjoint(held), split_holdout(files, 3) == (train, held)
        (7, 3, True, True)
    """
    if not 0 <= count < len(files):
        raise ValueError(f"cannot hold out {count} of {len(files)} images: keep at least one for training")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(files))
    held = set(order[:count].tolist())
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def clean_split(data: DataConfig) -> tuple[list[Path], list[Path]]:
    """``(train, held_out)``: a config's clean training images (``data.train_clean`` minus ``data.exclude`` and
    images smaller than a patch) with ``data.val_holdout`` of them held out by the fixed draw. Training and
    validation both take them from here, so the held-out images can never drift into training.
    ``data.exclude_training`` leaves images out of training only, after the draw, so that it does not move the
    held-out images (a fine-tune keeps the photos its starting run held out)."""
    files = list_clean_images(data.train_clean, read_exclusions(data.exclude), min_size=data.patch_size)
    train, held_out = split_holdout(files, data.val_holdout)
    if data.exclude_training:
        never = read_exclusions(data.exclude_training)
        train = [p for p in train if p.stem not in never]
    return train, held_out


def read_pair_names(file: str | os.PathLike) -> list[str]:
    """Pair names (``Pair.name``, the rainy file's stem), one per line, in file order; '#' starts a comment.

    Examples:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        ...     _ = f.write("# held out\\nnorain-3\\n norain-12  # a comment\\n")
        >>> read_pair_names(f.name)
        ['norain-3', 'norain-12']
    """
    names = [line.split("#", 1)[0].strip() for line in Path(file).read_text().splitlines()]
    return [name for name in names if name]


def pairs_of(roots: list[str]) -> list[Pair]:
    """Every pair of every dataset folder in ``roots``, in order.

    With more than one folder each pair's name is qualified by its folder's name (``RainTrainH_12/norain-9``), so
    that datasets whose files share names (``norain-9`` is in Rain100L's and Rain100H's training sets) stay apart
    in split files, validation logs and sampling weights.
    """
    if len(roots) == 1:
        return find_pairs(roots[0]).pairs
    return [Pair(f"{Path(root).name}/{pair.name}", pair.rainy, pair.clean) for root in roots
            for pair in find_pairs(root).pairs]  # fmt: skip


def dataset_of(pair: Pair) -> str:
    """The dataset folder a pair of :func:`pairs_of` came from (``""`` when it read a single folder)."""
    return pair.name.rsplit("/", 1)[0] if "/" in pair.name else ""


def split_pairs(pairs: list[Pair], names: list[str]) -> tuple[list[Pair], list[Pair]]:
    """Split ``pairs`` into ``(train, held_out)``: ``held_out`` are the ``names``, in that order.

    A name that matches no pair (or more than one) is an error: a typo must not let a validation pair
    slip back into training.
    """
    by_name: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_name.setdefault(pair.name, []).append(pair)
    bad = [name for name in names if len(by_name.get(name, [])) != 1]
    if bad:
        raise ValueError(f"held-out pair names that match no pair, or several: {bad[:5]}")
    held = set(names)
    return [p for p in pairs if p.name not in held], [by_name[name][0] for name in names]


def _flip(rainy: Tensor, clean: Tensor, flip: bool) -> tuple[Tensor, Tensor]:
    return (rainy.flip(-1), clean.flip(-1)) if flip else (rainy, clean)


class PairedPatches(Dataset):
    """Patches of real rainy/clean pairs: random crops, or the paper's fixed grid with a stride."""

    def __init__(
        self,
        roots: list[str],
        patch: int,
        stride: int | None,
        hflip: bool,
        seed: int,
        held_out: list[str] = (),
        weights: list[float] = (),
    ):
        """``held_out``: names of pairs never to train on (:func:`split_pairs`; the validation pairs).
        ``weights``: random crops draw a dataset folder with these relative weights (one per root), then a pair
        of it; without them every pair is equally likely."""
        self.pairs, _ = split_pairs(pairs_of(roots), list(held_out))
        self.patch, self.stride, self.hflip, self.seed = patch, stride, hflip, seed
        self.members: list[list[int]] = []  # per root: indices into self.pairs
        self.weights = np.asarray(weights, dtype=np.float64)
        if len(weights):
            if len(weights) != len(roots) or stride or (self.weights < 0).any() or self.weights.sum() <= 0:
                raise ValueError(f"data.pair_weights needs one non-negative weight per train_pairs folder "
                                 f"({len(roots)}), some positive, and random crops (no patch_stride)")  # fmt: skip
            names = [Path(root).name for root in roots] if len(roots) > 1 else [""]
            self.members = [[i for i, p in enumerate(self.pairs) if dataset_of(p) == name] for name in names]
            self.weights = self.weights / self.weights.sum()
        self.grid: list[tuple[int, int, int, bool]] = []
        if stride:
            for index, pair in enumerate(self.pairs):
                with Image.open(pair.rainy) as image:
                    w, h = image.size
                for y in range(0, h - patch + 1, stride):
                    for x in range(0, w - patch + 1, stride):
                        self.grid += [(index, y, x, False)] + ([(index, y, x, True)] if hflip else [])
            if not self.grid:
                raise ValueError(f"no {patch}x{patch} patches fit the images of {roots}")

    @property
    def patches_per_epoch(self) -> int:
        return len(self.grid) if self.grid else len(self.pairs)

    @functools.lru_cache(maxsize=4)  # noqa: B019 (a handful of epochs' orders; the dataset lives all run)
    def _epoch_order(self, epoch: int) -> Tensor:
        return torch.randperm(len(self.grid), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if self.grid:
            epoch, position = divmod(index, len(self.grid))
            pair_index, y, x, flip = self.grid[int(self._epoch_order(epoch)[position])]
            pair = self.pairs[pair_index]
            rainy, clean = _cached_image(str(pair.rainy)), _cached_image(str(pair.clean))
        else:
            rng = np.random.default_rng([self.seed, index])
            if self.members:
                members = self.members[int(rng.choice(len(self.members), p=self.weights))]
                pair = self.pairs[members[int(rng.integers(len(members)))]]
            else:
                pair = self.pairs[int(rng.integers(len(self.pairs)))]
            rainy, clean = _cached_image(str(pair.rainy)), _cached_image(str(pair.clean))
            h, w = rainy.shape[:2]
            if min(h, w) < self.patch:
                raise ValueError(f"{pair.rainy} ({w}x{h}) is smaller than the {self.patch}px patch")
            y, x = int(rng.integers(h - self.patch + 1)), int(rng.integers(w - self.patch + 1))
            flip = self.hflip and bool(rng.random() < 0.5)
        window = (slice(y, y + self.patch), slice(x, x + self.patch))
        return _flip(to_tensor(rainy[window])[0], to_tensor(clean[window])[0], flip)


class MixedPatches(Dataset):
    """Each sample a real pair (with probability ``pair_fraction``) or synthetic rain on a clean image.

    The choice is a pure function of the sample index and seed, like the samples of both sources.
    """

    def __init__(self, pairs: PairedPatches, synthetic: SyntheticPatches, pair_fraction: float, seed: int):
        self.pairs, self.synthetic, self.pair_fraction, self.seed = pairs, synthetic, pair_fraction, seed

    def __len__(self) -> int:
        return 2**62

    def is_pair(self, index: int) -> bool:
        return bool(np.random.default_rng([self.seed, index, 0x5EED]).random() < self.pair_fraction)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return (self.pairs if self.is_pair(index) else self.synthetic)[index]


class SyntheticPatches(Dataset):
    """Random crops of clean images with synthetic rain rendered on the fly (one seed per sample)."""

    def __init__(self, files: list[Path], patch: int, preset: str, hflip: bool, seed: int):
        self.files, self.patch, self.preset, self.hflip, self.seed = files, patch, preset, hflip, seed

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng([self.seed, index])
        clean = _cached_image(str(self.files[int(rng.integers(len(self.files)))]))
        h, w = clean.shape[:2]
        y, x = int(rng.integers(h - self.patch + 1)), int(rng.integers(w - self.patch + 1))
        window = (slice(y, y + self.patch), slice(x, x + self.patch))
        crop = to_tensor(clean[window])[0]
        params = sample_rain_params(self.preset, rng)
        if isinstance(params, StreakBankRain):  # bank streaks are placed at the photo's size, then cropped
            rainy = add_rain(to_tensor(clean)[0], params, rng)[0][:, window[0], window[1]]
        else:
            rainy, _ = add_rain(crop, params, rng)
        # Quantise like a saved rainy image, so training inputs look like real 8-bit inputs.
        rainy = to_tensor(quantize(rainy))[0]
        return _flip(rainy, crop, self.hflip and bool(rng.random() < 0.5))


class StepSampler(Sampler[int]):
    """Global sample indices of steps ``start .. total-1``, this process's share of each global batch.

    Process ``rank`` of ``world`` takes elements ``rank, rank + world, ...`` of every global batch of
    ``batch_size`` samples (which must divide evenly), so DDP's gradient average over processes equals
    the gradient of the whole batch.
    """

    def __init__(self, start: int, total: int, batch_size: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"the global batch ({batch_size}) must divide evenly over {world} processes")
        self.start, self.total, self.batch_size, self.rank, self.world = start, total, batch_size, rank, world

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.total):
            yield from range(step * self.batch_size + self.rank, (step + 1) * self.batch_size, self.world)

    def __len__(self) -> int:
        return max(0, self.total - self.start) * (self.batch_size // self.world)
