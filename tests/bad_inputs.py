"""The batch check: a folder of every kind of bad or unusual input mixed with good photos.

    python tests/bad_inputs.py [--model sian-synth-light] [--keep DIR]

Builds the folder, runs `sian derain` on it once, then checks and prints that every good and unusual image
was written in the right form, every bad file was reported with its specific reason, the exit status is 1,
and no input or pre-existing output was changed. Exits 0 only if all of that holds.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import png
import tifffile
from PIL import Image

GOOD = ["photo.jpg", "photo2.png", "gray.png", "rgba.png", "palette.png", "deep16.png", "deep16_tiff.tif", "cmyk.jpg",
        "rotated.jpg", "tiny_1x1.png", "雨の日.png", "existing.png"]  # fmt: skip
BAD = {  # file -> a phrase its error must contain
    "empty.png": "empty file",
    "notes.jpg": "not an image format",
    "truncated.png": "damaged or truncated",
    "truncated_jpeg.jpg": "damaged or truncated",
    "bomb.png": "exceeds the limit",
}


def scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    image = np.stack([0.3 + 0.5 * x, 0.2 + 0.6 * y, 0.5 - 0.3 * x * y], -1)
    for _ in range(30):  # a few bright streaks
        cy, cx = rng.integers(0, h - 8), rng.integers(0, w)
        image[cy : cy + 8, cx] = 0.95
    return (image.clip(0, 1) * 255).astype(np.uint8)


def build_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene()).save(folder / "photo.jpg", quality=95)
    Image.fromarray(scene(seed=1)).save(folder / "photo2.png")
    Image.fromarray(scene(seed=2)[..., 1]).save(folder / "gray.png")
    Image.fromarray(np.dstack([scene(seed=3), np.full((48, 64), 128, np.uint8)]), "RGBA").save(folder / "rgba.png")
    Image.fromarray(scene(seed=4)).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    deep = (scene(seed=5).astype(np.uint16) * 257 + 3).reshape(48, -1)
    png.from_array(deep, "RGB;16").save(str(folder / "deep16.png"))
    tifffile.imwrite(folder / "deep16_tiff.tif", deep.reshape(48, 64, 3), photometric="rgb")
    Image.fromarray(scene(seed=6)).convert("CMYK").save(folder / "cmyk.jpg")
    rotated = Image.fromarray(scene(seed=7))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(np.full((1, 1, 3), 90, np.uint8)).save(folder / "tiny_1x1.png")
    Image.fromarray(scene(seed=8)).save(folder / "雨の日.png")
    Image.fromarray(scene(seed=9)).save(folder / "existing.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("meeting notes, not a photo\n")
    full = (folder / "photo2.png").read_bytes()
    (folder / "truncated.png").write_bytes(full[: len(full) // 2])
    jpeg = (folder / "photo.jpg").read_bytes()
    (folder / "truncated_jpeg.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    Image.new("L", (12000, 10000)).save(folder / "bomb.png")  # 120 MP in ~100 kB


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sian-synth-light")
    parser.add_argument("--keep", type=Path, help="build the folders here and keep them")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="sian-bad-inputs-"))
    inputs, outputs = root / "inputs", root / "outputs"
    build_folder(inputs)
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / "existing.png").write_bytes(b"a result from yesterday")  # must survive without --overwrite
    before = {p.name: digest(p) for p in inputs.iterdir()}
    result = subprocess.run([sys.executable, "-m", "sian", "derain", str(inputs), "-o", str(outputs),
                             "--model", args.model], capture_output=True, text=True)  # fmt: skip
    print(result.stdout.strip())
    print("\n".join(line for line in result.stderr.replace("\r", "\n").splitlines() if not line.startswith("derain")))
    problems = []
    if result.returncode != 1:
        problems.append(f"exit status {result.returncode}, expected 1")
    for name in GOOD:
        target = outputs / f"{Path(name).stem}.png"
        if name == "existing.png":
            if target.read_bytes() != b"a result from yesterday":
                problems.append("an existing output was overwritten")
            continue
        if not target.is_file():
            problems.append(f"{name}: no output written")
    failed_lines = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    for name, phrase in BAD.items():
        lines = [line for line in failed_lines if Path(line.strip().split(": ", 1)[0]).name == name]
        if not lines or phrase not in lines[0]:
            problems.append(f"{name}: not reported with '{phrase}' ({lines})")
        if (outputs / f"{Path(name).stem}.png").exists():
            problems.append(f"{name}: an output was written for a bad input")
    if len(failed_lines) != len(BAD):
        problems.append(f"{len(failed_lines)} failures reported, expected {len(BAD)}")
    after = {p.name: digest(p) for p in inputs.iterdir()}
    if after != before:
        problems.append("an input file was changed or added")
    checks = {"rgba": "RGBA", "gray": "L", "palette": "RGB"}
    for stem, mode in checks.items():
        with Image.open(outputs / f"{stem}.png") as image:
            if image.mode != mode:
                problems.append(f"{stem}.png written as {image.mode}, expected {mode}")
    with Image.open(outputs / "rotated.png") as image:
        if image.size != (48, 64):
            problems.append(f"rotated.png is {image.size}, expected upright (48, 64)")
    if png.Reader(filename=str(outputs / "deep16.png")).read()[3]["bitdepth"] != 16:
        problems.append("deep16.png lost its 16 bits")
    print(f"\n{len(GOOD)} good or unusual images, {len(BAD)} bad files, in {root}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("all checks passed" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
