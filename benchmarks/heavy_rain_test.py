"""Heavy rain as a report: held-out heavy streak-bank rain whose input scores 14-20 dB.

    python benchmarks/heavy_rain_test.py [--model NAME_OR_FILE ...] [--band 14 20]
    python benchmarks/heavy_rain_test.py --stack 2 --band 11 16 --limit 40   # denser than any training rain
    python benchmarks/heavy_rain_test.py --preset classic --stack 3 --band 11 16 --limit 40   # another renderer

The test images are built so that no model of ours has seen them or chosen by them: the BSDS500 photos that
are Rain100L/H test backgrounds (`OVERLAP_with_Rain100LH_test_backgrounds.tsv`; every training config excludes
them, and they are not among the validation photos), each with `streaks-heavy` rain from the held-out streak
sets only, at seeds of their own (``TEST_SEED``, apart from the validation seeds), whole images; only those whose
rainy input scores inside ``--band`` (Y-PSNR, dB) are kept. Every model (as benchmarks/validate_models.py: our
shipped ones, the authors' SIAN Rain100L/H, any file named) is scored like validation (fp32, Y channel); the
report is the mean input, the mean output and the gain. Rows go to docs/results/heavy-rain-test.csv keyed by
either hash of the weights, as validate_models.py's (resumable), with a .md table beside it. This reports; it
never selects.

``--stack K`` lays K independent held-out heavy draws over each other (seeds apart per draw; K=1 is the test
above), rain denser than the heavy model's training rain ever gets (its inputs: 14.5-23 dB). It stands in for
the heavy-rain benchmark we do not have (Rain100H's inputs score about 13.5 dB): a stress report, with the
authors' Rain100H weights beside ours as the calibration, in docs/results/heavy-rain-test-stackK.csv.
``--preset classic`` draws the rain from our independent renderer of the Photoshop recipe behind Rain100H
(``sian.synth.classic``), which none of our models trained on: rain of another renderer at Rain100H's density
(three draws: inputs about 13.5 dB), in docs/results/heavy-rain-test-classic-stackK.csv.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
from pathlib import Path

import torch
from results_files import read_csv
from results_synth import shared_folder
from validate_models import backfill_tensors, is_cached, models, write_rows, write_table

from sian.hub import load_model
from sian.io import read_image, to_tensor
from sian.metrics import psnr_y, quantize
from sian.precision import describe_machine
from sian.synth import synthesize
from sian.training.datasets import read_exclusions
from sian.training.validation import ValidationSet, validate

REPO = Path(__file__).resolve().parents[1]
CSV = REPO / "docs/results/heavy-rain-test.csv"
TEST_SEED = 2_000_000  # validation rain uses 1_000_000 + index, training samples small indices
STACK_SEEDS = 1_000  # each stacked draw's seeds start this far from the last's (more than the photos)
FIELDS = ["model", "sha256", "tensors_sha256", "images", "input_psnr", "psnr", "gain", "ssim", "date", "machine"]


def test_photos(shared: Path) -> list[Path]:
    """The BSDS500 photos that are Rain100L/H test backgrounds: excluded from every training config."""
    overlap = shared / "data/BSDS500/OVERLAP_with_Rain100LH_test_backgrounds.tsv"
    stems = read_exclusions([str(overlap)])
    return sorted(p for p in (shared / "data/BSDS500").rglob("*.jpg") if p.stem in stems)


def heavy_test_set(
    shared: Path, band: tuple[float, float], stack: int = 1, limit: int | None = None, preset: str = "streaks-heavy"
) -> ValidationSet:
    """Held-out rain of ``preset`` (``stack`` draws laid over each other) on the test photos, inputs in ``band``."""
    test = ValidationSet([], [], [])
    for index, path in enumerate(test_photos(shared)):
        if limit is not None and len(test) >= limit:
            break
        clean = read_image(path)
        rainy = to_tensor(clean)[0]
        for draw in range(stack):
            rainy, _ = synthesize(rainy, preset, seed=TEST_SEED + STACK_SEEDS * draw + index, held_out=True)
        rainy = quantize(rainy)
        if band[0] <= psnr_y(rainy, clean) <= band[1]:
            test.names.append(path.stem)
            test.rainy.append(rainy)
            test.clean.append(clean)
            test.groups.append("synthetic")
    return test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="a weight file or name, besides the defaults")
    parser.add_argument("--band", type=float, nargs=2, default=(14.0, 20.0), metavar=("LOW", "HIGH"))
    parser.add_argument("--stack", type=int, default=1, help="heavy draws laid over each other (1: the test)")
    parser.add_argument("--limit", type=int, help="at most this many images (the first in name order)")
    parser.add_argument(
        "--preset",
        default="streaks-heavy",
        choices=["streaks-heavy", "classic"],
        help="the rain: held-out heavy streak-bank rain (the test), or the classic renderer's",
    )
    parser.add_argument("--csv", type=Path, help="default: docs/results/heavy-rain-test[-classic][-stackK].csv")
    args = parser.parse_args()
    if args.stack < 1:
        parser.error("--stack must be at least 1")
    suffix = "-classic" * (args.preset == "classic") + f"-stack{args.stack}" * (args.stack > 1)
    args.csv = args.csv or CSV.with_name(f"heavy-rain-test{suffix}.csv")
    shared = shared_folder()
    test = heavy_test_set(shared, tuple(args.band), args.stack, args.limit, args.preset)
    low, high = args.band
    print(f"{len(test)} test images with {args.stack} {args.preset} draw(s) inside {low:g}-{high:g} dB")
    rows = read_csv(args.csv)  # the resumable cache
    with tempfile.TemporaryDirectory() as tmp:
        candidates = models(args.model, shared, Path(tmp))
        if backfill_tensors(rows, candidates):
            write_rows(args.csv, FIELDS, rows)
        for name, (path, sha256, tensors) in candidates.items():
            if is_cached(rows, sha256, tensors, images=str(len(test))):
                continue
            scores = validate(load_model(path), test, torch.device("cpu"))
            gain = scores["val_psnr"] - scores["val_input_psnr"]
            rows.append({"model": name, "sha256": sha256, "tensors_sha256": tensors, "images": len(test),
                         "input_psnr": f"{scores['val_input_psnr']:.4f}", "psnr": f"{scores['val_psnr']:.4f}",
                         "gain": f"{gain:.4f}", "ssim": f"{scores['val_ssim']:.4f}",
                         "date": datetime.date.today().isoformat(), "machine": describe_machine()})  # fmt: skip
            print(f"{name}: {scores['val_input_psnr']:.2f} -> {scores['val_psnr']:.2f} dB ({gain:+.2f})")
            write_rows(args.csv, FIELDS, rows)
    table = ["| model | images | rainy input | derained | gain | SSIM | measured |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -float(r["gain"])):
        table.append(f"| `{r['model']}` | {r['images']} | {float(r['input_psnr']):.2f} | {float(r['psnr']):.2f} | "
                     f"{float(r['gain']):+.2f} | {float(r['ssim']):.4f} | {r['date']}, {r['machine']} |")  # fmt: skip
    command = " ".join(
        ["heavy_rain_test.py", f"--band {args.band[0]:g} {args.band[1]:g}"]
        + [f"--preset {args.preset}"] * (args.preset != "streaks-heavy")
        + [f"--stack {args.stack}"] * (args.stack > 1)
        + [f"--limit {args.limit}"] * bool(args.limit)
    )
    write_table(args.csv, command, table)


if __name__ == "__main__":
    main()
