"""Which BSDS500 images are the backgrounds of the 20 held-out Rain100L validation pairs.

    python tools/match_backgrounds.py [--split configs/splits/rain100l-train-val20.txt]
                                        [--out configs/splits/rain100l-train-val20-bsds500.tsv]

All 200 Rain100L training backgrounds are BSDS500 images (../shared/README.md). A model trained on BSDS500
clean images with our own rain and validated on those 20 pairs would have seen their backgrounds, so its
validation would flatter it: `data.exclude` takes the table this writes. Matching as for the shared
OVERLAP_with_Rain100LH_test_backgrounds.tsv: 48x32 grayscale thumbnails (portrait images turned to
landscape), mean absolute difference in 8-bit levels; the best match must stand out from the runner-up,
or the script stops and says so instead of guessing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from sian.data import shared_folder
from sian.io import list_images
from sian.training.datasets import read_pair_names

REPO = Path(__file__).resolve().parents[1]


def thumbnail(path: Path) -> np.ndarray:
    image = Image.open(path).convert("L")
    if image.height > image.width:
        image = image.transpose(Image.Transpose.ROTATE_90)
    return np.asarray(image.resize((48, 32), Image.Resampling.BOX), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", type=Path, default=REPO / "configs/splits/rain100l-train-val20.txt")
    parser.add_argument("--out", type=Path, default=REPO / "configs/splits/rain100l-train-val20-bsds500.tsv")
    parser.add_argument("--dataset", default="Rain100L_train", help="the pairs' folder under ../shared/data")
    parser.add_argument("--max-diff", type=float, default=3.0, help="largest accepted mean abs difference")
    args = parser.parse_args()
    shared = shared_folder(REPO.parent / "shared")
    bsds = shared / "data/BSDS500"
    candidates = list_images(bsds, recursive=True)
    thumbs = np.stack([thumbnail(p) for p in candidates])
    flipped = thumbs[:, ::-1, ::-1]  # a portrait image turned the other way
    rows = [f"{args.dataset.lower()}_clean_file\tbsds500_match\tmean_abs_diff_48x32_gray\trunner_up_diff"]
    for name in read_pair_names(args.split):
        clean = shared / "data" / args.dataset / "norain" / f"{name.rsplit('/', 1)[-1]}.png"
        target = thumbnail(clean)
        diffs = np.minimum(np.abs(thumbs - target).mean(axis=(1, 2)), np.abs(flipped - target).mean(axis=(1, 2)))
        order = np.argsort(diffs)
        best, second = diffs[order[0]], diffs[order[1]]
        if best > args.max_diff or second < 3 * best + 1:
            raise SystemExit(f"{clean.name}: no clear match (best {best:.2f}, runner-up {second:.2f}); not guessing")
        match = candidates[order[0]].relative_to(shared / "data")
        rows.append(f"{clean.name}\t{match}\t{best:.2f}\t{second:.2f}")
        print(rows[-1], flush=True)
    header = (
        f"# The BSDS500 images that are the backgrounds of the validation pairs in {args.split.name},\n"
        "# found by `python tools/match_backgrounds.py`; exclude them from clean training images.\n"
    )
    args.out.write_text(header + "\n".join(rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
