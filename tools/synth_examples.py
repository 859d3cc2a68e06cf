"""Synthetic rain next to real rain.

Writes two figures:
- OUT/synth_vs_rain100l.png: real Rain100L test inputs (top row) above our `light` and `heavy` rain
  rendered on Kodak24 images (needs ../shared; the figure contains third-party images, so it is
  written to the build folder, never committed);
- docs/images/rain_layers.png: rain layers alone (white streaks on black) for a few seeds of each
  formula preset (rows: light, heavy, classic), made from nothing but our renderer, so it can live in the repository;
- docs/images/streaks_kodim16.png: streak-bank rain (streaks-light, streaks, streaks-heavy) over the bundled
  clean example (Kodak's kodim16, free to redistribute), when the streak bank is found;
- docs/images/raintrainh_kodim16.png: `raintrainh` rain (real Rain100H rain layers of the held-in RainTrainH pairs)
  over the same photo, three seeds, when the pairs are found; OUT/raintrainh_vs_pairs.png puts RainTrainH rainy
  inputs beside such composites (third-party images: build folder only), and the input Y-PSNR of the composites
  over configs/sian-raintrainh.yaml's 20 held-out photos (held-out layers) is printed beside the pairs' own.

Usage: python tools/synth_examples.py [--shared ../shared] [--out build]
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sian.data import shared_folder
from sian.demo import load_example
from sian.io import read_image, to_tensor
from sian.metrics import quantize
from sian.synth import add_rain, sample_rain_params, synthesize
from sian.synth.streaks import STREAK_PRESETS

FORMULA_PRESETS = ("light", "heavy", "classic")


def row(images: list[np.ndarray], height: int = 240, gap: int = 4) -> np.ndarray:
    resized = []
    for image in images:
        pil = Image.fromarray(image)
        resized.append(np.asarray(pil.resize((round(pil.width * height / pil.height), height))))
        resized.append(np.full((height, gap, 3), 255, np.uint8))
    return np.concatenate(resized[:-1], axis=1)


def stack(rows: list[np.ndarray], gap: int = 4) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)[:-gap]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=shared_folder())
    parser.add_argument("--out", default="build")
    args = parser.parse_args()

    layers = []
    for preset in FORMULA_PRESETS:
        panels = []
        for seed in range(4):
            rng = np.random.default_rng(seed)
            _, rain = add_rain(torch.zeros(3, 200, 200), sample_rain_params(preset, rng), rng)
            panels.append(quantize(rain.expand(3, -1, -1)))
        layers.append(row(panels, height=200))
    Path("docs/images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(stack(layers)).save("docs/images/rain_layers.png")
    print(f"wrote docs/images/rain_layers.png (rows: {', '.join(FORMULA_PRESETS)})")
    try:
        _, clean = load_example()
        panels = [quantize(synthesize(to_tensor(clean)[0], preset, seed)[0])
                  for preset in STREAK_PRESETS for seed in (0,)]  # fmt: skip
        Image.fromarray(row([clean, *panels], height=250)).save("docs/images/streaks_kodim16.png")
        print(f"wrote docs/images/streaks_kodim16.png (clean, then {', '.join(STREAK_PRESETS)})")
    except FileNotFoundError as exc:
        print(f"no streak bank ({exc}): skipping docs/images/streaks_kodim16.png")

    try:
        raintrainh_figures(clean, Path(args.out))
    except FileNotFoundError as exc:
        print(f"no RainTrainH pairs ({exc}): skipping docs/images/raintrainh_kodim16.png")

    shared = Path(args.shared)
    if not shared.is_dir():
        print(f"{shared} not found: skipping the comparison with real Rain100L images")
        return
    real = [read_image(shared / f"data/Rain100L_test/rainy/rain-{i:03d}.png") for i in (12, 40, 77)]
    kodak = sorted((shared / "data/Kodak24").glob("*.png"))[:3]
    light = [quantize(synthesize(to_tensor(read_image(p))[0], "light", i)[0]) for i, p in enumerate(kodak)]
    heavy = [quantize(synthesize(to_tensor(read_image(p))[0], "heavy", i)[0]) for i, p in enumerate(kodak)]

    # How much of the image rain touches: real Rain100L pairs vs our light preset on Kodak24.
    def changed(rainy: np.ndarray, clean: np.ndarray) -> float:
        return float((np.abs(rainy.astype(int) - clean.astype(int)).max(2) > 5).mean())

    real_shares = [
        changed(read_image(shared / f"data/Rain100L_test/rainy/rain-{i:03d}.png"),
                read_image(shared / f"data/Rain100L_test/norain-{i:03d}.png"))
        for i in range(1, 101, 7)
    ]  # fmt: skip
    all_kodak = sorted((shared / "data/Kodak24").glob("*.png"))
    synth_shares = []
    for seed, path in enumerate(all_kodak[:12]):
        clean = read_image(path)
        synth_shares.append(changed(quantize(synthesize(to_tensor(clean)[0], "light", seed)[0]), clean))
    print(f"pixels changed by more than 5 levels: real Rain100L (15 pairs) mean {np.mean(real_shares):.1%}, "
          f"max {np.max(real_shares):.1%}; synthetic light (12 Kodak images) mean {np.mean(synth_shares):.1%}, "
          f"max {np.max(synth_shares):.1%}")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stack([row(real), row(light), row(heavy)])).save(out / "synth_vs_rain100l.png")
    print(f"wrote {out / 'synth_vs_rain100l.png'} (rows: real Rain100L, synthetic light, synthetic heavy)")


def raintrainh_figures(clean: np.ndarray, out: Path) -> None:
    """The `raintrainh` figure for the docs, its side-by-side with real pairs, and its calibration."""
    from sian.data import find_pairs
    from sian.metrics import psnr_y
    from sian.synth.layers import layer_pairs, rain_layers_dir
    from sian.training import load_config
    from sian.training.validation import validation_sources

    panels = [quantize(synthesize(to_tensor(clean)[0], "raintrainh", seed)[0]) for seed in range(3)]
    Image.fromarray(row([clean, *panels], height=250)).save("docs/images/raintrainh_kodim16.png")
    print("wrote docs/images/raintrainh_kodim16.png (clean, then raintrainh seeds 0-2)")
    pairs = {p.name: p for p in find_pairs(rain_layers_dir()).pairs}
    real = [read_image(pairs[name].rainy) for name in layer_pairs()[:3]]
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stack([row(real), row(panels)])).save(out / "raintrainh_vs_pairs.png")
    print(f"wrote {out / 'raintrainh_vs_pairs.png'} (rows: held-in RainTrainH inputs, raintrainh composites)")
    own = [psnr_y(read_image(p.rainy), read_image(p.clean)) for p in pairs.values()]
    sources = validation_sources(load_config("configs/sian-raintrainh.yaml").data)
    composites = []
    for index, path in enumerate(sources.clean):
        photo = read_image(path)
        rainy, _ = synthesize(to_tensor(photo)[0], "raintrainh", seed=1_000_000 + index, held_out=True)
        composites.append(psnr_y(quantize(rainy), photo))
    print(
        f"input Y-PSNR: the 12 RainTrainH pairs {np.mean(own):.2f} dB ({np.min(own):.1f}-{np.max(own):.1f}); "
        f"raintrainh over the {len(composites)} held-out photos, held-out layers, as validated: "
        f"{np.mean(composites):.2f} dB ({np.min(composites):.1f}-{np.max(composites):.1f})"
    )


if __name__ == "__main__":
    main()
