"""The self-ensemble table from `benchmarks/self_ensemble_rain100l.sh`'s JSON reports (markdown).

    python benchmarks/self_ensemble_table.py [FOLDER]     (default: docs/results/self-ensemble)

One row per model and mode: Y-PSNR/SSIM on the images of the run, the gain over no ensemble, on how many
images the mode beats no ensemble, seconds per image and the cost as a ratio to no ensemble in the same run.
benchmarks/results_rain100l.py puts the same table on the results page.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1] / "docs/results/self-ensemble"
HEADER = [
    "| model | self-ensemble | images | Y-PSNR | Y-SSIM | gain (dB) | images improved | s / image | cost | run |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def table_lines(folder: Path = FOLDER) -> list[str]:
    lines = []
    for path in sorted(folder.glob("*.json")):
        report = json.loads(path.read_text())
        summaries, images = report["summaries"], report["images"]
        plain, plain_rows = summaries["none"], images["none"]
        run = (folder / f"{path.stem}.txt").read_text().splitlines()[0].lstrip("# ").split("; ", 1)[-1]
        for mode, s in summaries.items():
            better = sum(r["psnr"] > p["psnr"] for r, p in zip(images[mode], plain_rows, strict=True))
            lines.append(
                f"| `{report['model']}` | {mode} | {s['images']} | {s['psnr']:.4f} | {s['ssim']:.4f} | "
                f"{s['psnr'] - plain['psnr']:+.4f} | {better if mode != 'none' else '-'} | "
                f"{s['seconds_per_image']:.2f} | {s['seconds_per_image'] / plain['seconds_per_image']:.2f}x | {run} |"
            )
    return HEADER + lines if lines else []


if __name__ == "__main__":
    print("\n".join(table_lines(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER)))
