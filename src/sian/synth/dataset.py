"""A paired training or test set from clean photos: ``OUTPUT/rainy/NAME.png`` and ``OUTPUT/gt/NAME.png``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .._atomic import atomic_path
from ..io import ImageReadError, read_image, to_tensor, write_image
from ..metrics import quantize
from .rain import synthesize

__all__ = ["SynthReport", "write_synthetic_pairs"]

PARAMS_FILE = "rain_params.jsonl"


@dataclass
class SynthReport:
    """What :func:`write_synthetic_pairs` wrote: one record per pair (name, source, seed, preset, the rain's
    parameters), and every input it could not use with the reason."""

    records: list[dict] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)


def write_synthetic_pairs(
    files: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    preset: str = "light",
    seed: int = 0,
    variants: int = 1,
    overwrite: bool = False,
) -> SynthReport:
    """Render ``preset`` rain onto each clean image, ``variants`` times, as a dataset in the generic layout.

    Image ``i`` (counting every variant) uses seed ``seed + i``. A pair is written whole or not at all: one whose
    files exist is skipped and reported unless ``overwrite``. A file that cannot be read is reported and the rest
    go on. ``OUTPUT/rain_params.jsonl`` holds one record per pair; a pair written again replaces its record.

    Raises:
        FileNotFoundError: a rain source's data (the streak bank, the RainTrainH pairs) is absent.

    Examples:
        >>> import numpy as np, tempfile
        >>> from pathlib import Path
        >>> from sian.io import write_image
        >>> folder = Path(tempfile.mkdtemp())
        >>> clean = write_image(folder / "photo.png", np.full((32, 48, 3), 90, np.uint8))
        >>> report = write_synthetic_pairs([clean], folder / "set", preset="light", variants=2)
        >>> [record["name"] for record in report.records], sorted(p.name for p in (folder / "set" / "rainy").iterdir())
        (['photo_1', 'photo_2'], ['photo_1.png', 'photo_2.png'])
    """
    output = Path(output)
    report, index = SynthReport(), 0
    for path in map(Path, files):
        try:
            clean = read_image(path)
        except ImageReadError as exc:
            report.failures.append((path, str(exc)))
            continue
        for version in range(variants):
            name = path.stem if variants == 1 else f"{path.stem}_{version + 1}"
            targets = (output / "rainy" / f"{name}.png", output / "gt" / f"{name}.png")
            existing = [str(t) for t in targets if t.exists()]
            if existing and not overwrite:
                # Checked for both files first, so a pair is written whole or not at all.
                report.failures.append((path, f"{', '.join(existing)} exists (pass --overwrite to replace)"))
                index += 1
                continue
            rainy, params = synthesize(to_tensor(clean)[0], preset, seed + index)
            write_image(targets[0], quantize(rainy), overwrite=True)
            write_image(targets[1], clean, overwrite=True)
            report.records.append({"name": name, "source": str(path), "seed": seed + index, "preset": preset,
                                   "params": params.to_dict()})  # fmt: skip
            index += 1
    output.mkdir(parents=True, exist_ok=True)
    params_file = output / PARAMS_FILE
    rewritten = {record["name"] for record in report.records}
    kept = [line for line in (params_file.read_text().splitlines() if params_file.is_file() else [])
            if line.strip() and json.loads(line).get("name") not in rewritten]  # fmt: skip
    with atomic_path(params_file) as tmp:
        tmp.write_text("".join(line + "\n" for line in [*kept, *(json.dumps(r) for r in report.records)]))
    return report
