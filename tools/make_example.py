"""Make the one bundled example: Kodak's kodim16 with `light` synthetic rain from our synthesizer.

kodim16 is one of the 20 images that configs/sian-synth-light.yaml holds out of training (checked below), so
the demo scores sian-synth-light on an image it never saw; the default model (sian-general)
trained on its clean photo (see src/sian/assets/CREDITS.md). Writes src/sian/assets/kodim16_{rainy,clean}.png
and the parameters of the rain to src/sian/assets/kodim16_rain.json.

    python tools/make_example.py [--seed 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sian.data import shared_folder
from sian.io import read_image, to_tensor, write_image
from sian.metrics import psnr_y, quantize, ssim_y
from sian.synth import synthesize
from sian.training import load_config
from sian.training.datasets import clean_split

REPO = Path(__file__).resolve().parents[1]
NAME = "kodim16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    shared = shared_folder(REPO.parent / "shared")
    config = load_config(REPO / "configs/sian-synth-light.yaml")
    _, held_out = clean_split(config.data)
    assert NAME in {p.stem for p in held_out}, f"{NAME} is not held out of sian-synth-light's training"

    clean = read_image(shared / "data/Kodak24" / f"{NAME}.png")
    rainy, params = synthesize(to_tensor(clean)[0], "light", seed=args.seed)
    rainy = quantize(rainy)
    out = REPO / "src/sian/assets"
    write_image(out / f"{NAME}_clean.png", clean, overwrite=True)
    write_image(out / f"{NAME}_rainy.png", rainy, overwrite=True)
    record = {"source": f"Kodak24/{NAME}.png", "preset": "light", "seed": args.seed, "params": params.to_dict()}
    (out / f"{NAME}_rain.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"rainy input vs clean: {psnr_y(rainy, clean):.2f} dB / {ssim_y(rainy, clean):.4f}")


if __name__ == "__main__":
    main()
