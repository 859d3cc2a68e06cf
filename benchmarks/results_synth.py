"""The results page of our own weights, made by one command: docs/results-synth.md.

    python benchmarks/results_synth.py [--limit N]

On the real Rain100L test set (never used for training, tuning or selection): rainy input vs our shipped
sian-synth-light and sian-synth-heavy vs the authors' SIAN and PReNet weights (imported from
$SIAN_SHARED/weights into a temporary folder when present), Y PSNR/SSIM and seconds per image, all timed in
this one run; per-stage PSNR of our light model (the paper's Fig. 6); the training curves from
checkpoints/*/log.jsonl. Writes docs/results-synth.md, docs/results/synth-rain100l.csv (read by
tools/ship_weights.py for the model cards) and docs/images/synth-*.png. Visual examples on real rain
(../shared/data/real_rain_webcam) contain third-party photos, so they go to build/results-synth/ only.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from sian.convert import import_weights
from sian.data import find_pairs
from sian.data import shared_folder as sian_shared_folder
from sian.evaluate import EvalSummary, evaluate, summarize
from sian.hub import WEIGHTS, load_model
from sian.inference import derain_tensor
from sian.io import read_image, to_tensor
from sian.metrics import psnr_y, quantize
from sian.precision import describe_machine
from sian.weights import sha256_file

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
OURS = ("sian-synth-light", "sian-synth-heavy")
AUTHORS = {  # name: (file under $SIAN_SHARED/weights, quantisation of its release)
    "sian-rain100l": ("sian_authors/rain100l.pth", "round"),
    "prenet-rain100l": ("prenet_authors/Rain100L/PReNet6.pth", "floor"),
}


REAL_RAIN_NOTE = (
    "`build/results-synth/real-rain.png` is written by the same command and not committed, because the webcam\n"
    "frames are third-party images: rainy frames from `real_rain_webcam/rainy_R` (left), then each of our models\n"
    "and the authors' Rain100L model (column order in `build/results-synth/real-rain.txt`)."
)


def shared_folder() -> Path:
    """``$SIAN_SHARED`` or ``../shared`` beside the checkout; the results scripts use every core."""
    torch.set_num_threads(os.cpu_count() or 1)
    return sian_shared_folder(REPO.parent / "shared")


def import_authors(shared: Path, tmp: Path) -> dict[str, tuple[Path, str, Path]]:
    """name -> (imported weight file under ``tmp``, quantisation of its release, the original checkpoint) for
    every authors' checkpoint of :data:`AUTHORS` found under ``shared``; the results scripts all start here."""
    found = {}
    for name, (relative, quantization) in AUTHORS.items():
        source = shared / "weights" / relative
        if source.is_file():
            found[name] = (import_weights(source, name, dest_dir=tmp), quantization, source)
        else:
            print(f"skipping {name}: {source} not found")
    return found


def load_models(shared: Path, tmp: Path) -> dict[str, tuple[torch.nn.Module, str, str]]:
    """name -> (model, quantisation, sha256 of the weight file) for every model that is available."""
    models = {}
    for name in OURS:
        if name in WEIGHTS and WEIGHTS[name].bundled:
            models[name] = (load_model(name), "round", WEIGHTS[name].sha256)
    for name, (path, quantization, source) in import_authors(shared, tmp).items():
        models[name] = (load_model(path), quantization, sha256_file(source))
    return models


class _KeepStages(torch.nn.Module):
    """Runs ``model`` with every stage's output and keeps them, returning the final one as ``sian eval``
    expects: the scores stay exactly evaluate()'s, and the stages cost no second pass."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.min_size, self.stages = model, getattr(model, "min_size", 1), []

    def forward(self, x: torch.Tensor, return_all: bool = False) -> torch.Tensor:
        self.stages = self.model(x, return_all=True)
        return self.stages if return_all else self.stages[-1]


@torch.inference_mode()
def evaluate_with_stages(model: torch.nn.Module, pairs, quantization: str = "round") -> tuple[EvalSummary, list[float]]:
    """`sian eval`'s numbers (final stage) plus the mean PSNR of every stage, in one pass."""
    keeper, clean_of, per_stage = _KeepStages(model), {pair.name: pair.clean for pair in pairs}, []

    def score_stages(row) -> None:
        clean = read_image(clean_of[row.name])
        per_stage.append([psnr_y(quantize(output, quantization), clean) for output in keeper.stages])

    rows = evaluate(keeper, pairs, quantization, on_row=score_stages)
    return summarize(rows), np.mean(per_stage, axis=0).tolist()


def training_curves(path: Path) -> list[str]:
    runs = sorted((REPO / "checkpoints").glob("sian-synth-*/log.jsonl"))
    if not runs:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    lines = []
    for log in runs:
        records = [json.loads(line) for line in log.read_text().splitlines()]
        train = [r for r in records if "loss" in r]
        val = [r for r in records if "val_psnr" in r]
        name = log.parent.name
        left.plot([r["step"] for r in train], [r["loss"] for r in train], label=name, lw=0.8)
        right.plot([r["cpu_seconds"] / 3600 for r in val], [r["val_psnr"] for r in val], "o-", label=name, ms=3)
        if val:
            best = max(val, key=lambda r: r["val_psnr"])
            hours = train[-1]["cpu_seconds"] / 3600
            lines.append(f"| {name} | {train[-1]['step']} | {hours:.2f} | {best['val_psnr']:.2f} (step {best['step']}) "
                         f"| {val[0]['val_input_psnr']:.2f} |")  # fmt: skip
    left.set(xlabel="step", ylabel="training loss (-SSIM summed over 6 stages)", title="training loss")
    right.set(xlabel="CPU-hours", ylabel="Y-PSNR (dB)", title="held-out synthetic validation")
    save_figure(fig, (left, right), path, legend=True)
    return lines


def save_figure(fig, axes, path: Path, legend: bool = False) -> None:
    """The figures' common finish: a light grid (and legend) on every axis, tight layout, 110 dpi PNG."""
    for axis in axes:
        axis.grid(alpha=0.3)
        if legend:
            axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_figure(stages: dict[str, list[float]], path: Path) -> None:
    fig, axis = plt.subplots(figsize=(5.5, 3.6))
    for name, values in stages.items():
        axis.plot(range(1, len(values) + 1), values, "o-", label=name)
    axis.set(xlabel="stage", ylabel="Y-PSNR on Rain100L test (dB)", title="per-stage PSNR (cf. the paper's Fig. 6)")
    save_figure(fig, (axis,), path, legend=True)


def real_rain_examples(models, shared: Path, out: Path, count: int = 4) -> Path | None:
    folder = shared / "data/real_rain_webcam/rainy_R"
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.png"))[:: max(1, len(files := sorted(folder.glob("*.png"))) // count)][:count]
    names = [n for n in (*OURS, "sian-rain100l") if n in models]
    rows = []
    for file in files:
        rainy = read_image(file)
        panels = [rainy] + [quantize(derain_tensor(models[n][0], to_tensor(rainy))) for n in names]
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "real-rain.png"
    Image.fromarray(grid).save(path)
    (out / "real-rain.txt").write_text("columns: rainy input, " + ", ".join(names) + "\nrows: " +
                                       ", ".join(f.name for f in files) + "\n")  # fmt: skip
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N test pairs (a quick look)")
    args = parser.parse_args()
    shared = shared_folder()
    pairs = find_pairs(shared / "data/Rain100L_test").pairs[: args.limit or None]
    date = datetime.date.today().isoformat()
    (DOCS / "images").mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        models = load_models(shared, Path(tmp))
        summaries, stages = {}, {}
        for name, (model, quantization, _) in models.items():
            print(f"evaluating {name} on {len(pairs)} Rain100L test pairs ...", flush=True)
            with torch.inference_mode():  # warm-up, so that no model pays for first-call setup in its timing
                model(to_tensor(read_image(pairs[0].rainy)).to(memory_format=torch.channels_last), return_all=False)
            if name in OURS:  # the same numbers as `sian eval`, plus every stage
                summaries[name], stages[name] = evaluate_with_stages(model, pairs)
            else:
                summaries[name] = summarize(evaluate(model, pairs, quantization))
        examples = real_rain_examples(models, shared, REPO / "build/results-synth")

    with open(DOCS / "results/synth-rain100l.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "sha256", "quantize", "images", "psnr", "ssim", "input_psnr", "input_ssim",
                         "seconds_per_image", "date", "machine"])  # fmt: skip
        for name, s in summaries.items():
            writer.writerow([name, models[name][2], models[name][1], s.images, f"{s.psnr:.4f}", f"{s.ssim:.4f}",
                             f"{s.input_psnr:.4f}", f"{s.input_ssim:.4f}", f"{s.seconds_per_image:.3f}", date,
                             describe_machine()])  # fmt: skip
    curves = training_curves(DOCS / "images/synth-training-curve.png")
    if stages:
        stage_figure(stages, DOCS / "images/synth-stage-psnr.png")

    first = next(iter(summaries.values()))
    table = ["| model | trained on | quantisation | Y-PSNR | Y-SSIM | s / image |", "|---|---|---|---|---|---|",
             f"| rainy input | - | - | {first.input_psnr:.2f} | {first.input_ssim:.4f} | - |"]  # fmt: skip
    manifest = json.loads((REPO / "src/sian/pretrained/manifest.json").read_text())
    shipped = {name: f", step {manifest[name]['step']}" if name in manifest else "" for name in OURS}
    trained_on = {"sian-synth-light": f"synthetic light rain (ours{shipped['sian-synth-light']})",
                  "sian-synth-heavy": f"synthetic heavy rain (ours{shipped['sian-synth-heavy']})",
                  "sian-rain100l": "Rain100L train (authors)",
                  "prenet-rain100l": "Rain100L train (authors)"}  # fmt: skip
    for name, s in summaries.items():
        table.append(f"| `{name}` | {trained_on[name]} | {models[name][1]} | {s.psnr:.2f} | {s.ssim:.4f} | "
                     f"{s.seconds_per_image:.2f} |")  # fmt: skip
    stage_lines = [f"| `{n}` | " + " | ".join(f"{v:.2f}" for v in values) + " |" for n, values in stages.items()]
    subset = f"the first {len(pairs)} of the 100 pairs" if args.limit else "all 100 pairs"
    page = f"""# Our own weights on real Rain100L

Made by `python benchmarks/results_synth.py` on {date} ({describe_machine()}), on {subset} of the real Rain100L
test set, which none of our models saw in training, tuning or checkpoint selection. Y-channel PSNR/SSIM per
[protocol.md](protocol.md); every model timed in this one run, whole images (481x321), so read the seconds
as ratios. The authors' weights were trained on Rain100L's own training pairs: they are the ceiling, not
a like-for-like comparison. Model cards (with how each shipped checkpoint was selected):
`src/sian/pretrained/*.md`.

{chr(10).join(table)}

## Per-stage PSNR (the paper's Fig. 6)

| model | {" | ".join(f"stage {i + 1}" for i in range(len(next(iter(stages.values()), []))))} |
|---|{"---|" * len(next(iter(stages.values()), []))}
{chr(10).join(stage_lines)}

![per-stage PSNR](images/synth-stage-psnr.png)

## Training

| run | steps so far | CPU-hours so far | best held-out val PSNR | val input PSNR |
|---|---|---|---|---|
{chr(10).join(curves)}

![training curves](images/synth-training-curve.png)

## Real rain

{REAL_RAIN_NOTE if examples else "No real-rain frames found (`$SIAN_SHARED/data/real_rain_webcam`)."}
"""
    (DOCS / "results-synth.md").write_text(page)
    print(page)


if __name__ == "__main__":
    main()
