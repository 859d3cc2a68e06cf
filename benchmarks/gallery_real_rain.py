"""A real-rain gallery, made by one command, into build/ (the frames are third-party images,
so nothing of it is committed).

    python benchmarks/gallery_real_rain.py [--frames N] [--out build/gallery-real-rain] [--model NAME_OR_FILE ...]

Every shipped model of ours, the authors' SIAN and PReNet Rain100L weights (imported from $SIAN_SHARED/weights
into a temporary folder when present) and any weights named with --model (a candidate run's
checkpoints/<run>/best.safetensors is labelled with the run's name, so it can be judged before it ships) derain
real webcam frames ($SIAN_SHARED/data/real_rain_webcam/rainy_R, one frame per scene by default). One PNG per
frame: the top row holds the rainy frame and each model's output, the bottom row each model's rain layer (rainy
minus output, the part it took away: brightened 3x so thin streaks show; black = nothing removed). index.html
shows them all with the column order. There are no clean, aligned frames, so there is no score: judge by eye.
"""

from __future__ import annotations

import argparse
import html
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from results_files import run_name
from results_synth import import_authors, shared_folder

from sian.hub import WEIGHTS, load_model
from sian.inference import Pipeline
from sian.io import read_image

REPO = Path(__file__).resolve().parents[1]
RAIN_GAIN = 3.0


def models(shared: Path, tmp: Path, extra: list[str]) -> dict[str, Pipeline]:
    """Every shipped model of ours, the authors' weights and ``extra``, each with its release's own rounding."""
    found = {name: (load_model(name), "round") for name, entry in WEIGHTS.items() if entry.bundled}
    found |= {run_name(item): (load_model(item), "round") for item in extra}
    for name, (path, quantization, _) in import_authors(shared, tmp).items():
        found[name] = (load_model(path), quantization)
    return {name: Pipeline(model, precision="fp32", quantization=quantization)
            for name, (model, quantization) in found.items()}  # fmt: skip


def one_per_scene(folder: Path, frames: int) -> list[Path]:
    files = sorted(folder.glob("*.png"))
    scenes: dict[str, Path] = {}
    for file in files:
        scenes.setdefault(file.name.split("-Webcam")[0], file)
    chosen = list(scenes.values())
    return (chosen + [f for f in files if f not in chosen])[:frames]


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    *_, right, bottom = draw.textbbox((3, 2), text)
    draw.rectangle((0, 0, right + 3, bottom + 2), fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255))
    return np.asarray(picture)


def panel(rainy: np.ndarray, outputs: dict[str, np.ndarray]) -> np.ndarray:
    gap = np.full((rainy.shape[0], 4, 3), 255, np.uint8)
    top, bottom = [labelled(rainy, "rainy")], [np.zeros_like(rainy)]
    for name, output in outputs.items():
        rain = np.clip((rainy.astype(np.float32) - output) * RAIN_GAIN, 0, 255).astype(np.uint8)
        top += [gap, labelled(output, name)]
        bottom += [gap, labelled(rain, f"{name}: rain x{RAIN_GAIN:g}")]
    rows = [np.concatenate(top, 1), np.concatenate(bottom, 1)]
    return np.concatenate([rows[0], np.full((4, rows[0].shape[1], 3), 255, np.uint8), rows[1]], 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="how many frames (one per scene first)")
    parser.add_argument("--out", type=Path, default=REPO / "build/gallery-real-rain")
    parser.add_argument("--model", action="append", default=[], help="a weight file or name, besides the defaults")
    args = parser.parse_args()
    shared = shared_folder()
    folder = shared / "data/real_rain_webcam/rainy_R"
    if not folder.is_dir():
        raise SystemExit(f"no webcam frames at {folder} (set SIAN_SHARED)")
    args.out.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        pipelines = models(shared, Path(tmp), args.model)
        for file in one_per_scene(folder, args.frames):
            rainy = read_image(file)
            outputs = {name: pipeline(rainy) for name, pipeline in pipelines.items()}
            target = args.out / f"{file.stem}.png"
            Image.fromarray(panel(rainy, outputs)).save(target)
            entries.append(target.name)
            print(f"{file.name} -> {target}", flush=True)
    columns = ", ".join(["rainy", *pipelines])
    items = "\n".join(f'<h3>{html.escape(name)}</h3><img src="{html.escape(name)}" style="max-width:100%">'
                      for name in entries)  # fmt: skip
    (args.out / "index.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>sian: real rain</title><h1>Real rain, {len(entries)} webcam "
        f"frames</h1><p>Columns: {html.escape(columns)}. Bottom row: each model's rain layer (rainy minus "
        f"output) x{RAIN_GAIN:g}. Made by <code>python benchmarks/gallery_real_rain.py</code>.</p>\n{items}\n"
    )
    print(f"gallery: {args.out / 'index.html'} (columns: {columns})")


if __name__ == "__main__":
    main()
