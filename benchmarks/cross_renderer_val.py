"""Score every checkpoint our training runs committed on held-out rain from each renderer.

    python benchmarks/cross_renderer_val.py [--runs light heavy] [--threads 1]

The 20 held-out clean images of configs/sian-synth-light.yaml (never trained on), centre-cropped to 256,
carry fixed rain from each preset: `light` and `heavy` (the renderer we train on) and `classic` (an
independent renderer, sian.synth.classic, that no run trains on). Candidates are every version of
checkpoints/sian-synth-<run>/best.safetensors in the git history plus the current best and last files.
A checkpoint that is good on `classic` rain is good at rain it was not fitted to; one that gains on its own
renderer while losing on `classic` is fitting the renderer. Rain100L is not used here.

Resumable: rows already in docs/results/cross-renderer-val.csv (same sha256) are kept, not recomputed.
Writes that CSV and docs/results/cross-renderer-val.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import platform
import struct
import subprocess
import tempfile
from pathlib import Path

import torch

from sian.hub import load_model
from sian.training import load_config
from sian.training.validation import build_validation_set, validate

REPO = Path(__file__).resolve().parents[1]
CSV = REPO / "docs/results/cross-renderer-val.csv"
TABLE = REPO / "docs/results/cross-renderer-val.md"
PRESETS = ("light", "heavy", "classic")
FIELDS = ["run", "step", "sha256", *(f"{p}_{m}" for p in PRESETS for m in ("psnr", "ssim", "input_psnr"))]


def metadata(blob: bytes) -> dict:
    size = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + size]).get("__metadata__", {})


def candidates(run: str) -> list[tuple[str, bytes]]:
    """(step, file bytes) of every committed best.safetensors of the run, plus the current best and last."""
    folder = f"checkpoints/sian-synth-{run}"
    blobs = []
    for name in ("best", "last"):
        path = f"{folder}/{name}.safetensors"
        if name == "best":
            revisions = subprocess.run(["git", "log", "--format=%H", "--", path], cwd=REPO, capture_output=True,
                                       text=True, check=True).stdout.split()  # fmt: skip
            blobs += [subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True).stdout
                      for rev in revisions]  # fmt: skip
        if (REPO / path).is_file():
            blobs.append((REPO / path).read_bytes())
    unique = {hashlib.sha256(b).hexdigest(): b for b in blobs if b}
    return sorted(((metadata(b).get("step", "?"), b) for b in unique.values()), key=lambda t: int(t[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=["light", "heavy"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves a core to training)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_config(REPO / "configs/sian-synth-light.yaml").data
    sets = {}
    for preset in PRESETS:
        data.val_preset = preset
        sets[preset] = build_validation_set(data)
    rows = {}
    if CSV.is_file():
        with open(CSV) as f:
            rows = {r["sha256"]: r for r in csv.DictReader(f)}
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            for step, blob in candidates(run):
                sha = hashlib.sha256(blob).hexdigest()
                if sha in rows:
                    continue
                path = Path(tmp) / f"{sha}.safetensors"
                path.write_bytes(blob)
                model, row = load_model(path), {"run": f"sian-synth-{run}", "step": step, "sha256": sha}
                for preset, val in sets.items():
                    scores = validate(model, val, torch.device("cpu"))
                    for metric in ("psnr", "ssim", "input_psnr"):
                        row[f"{preset}_{metric}"] = f"{scores[f'val_{metric}']:.4f}"
                rows[sha] = row
                print(" ".join(f"{k}={v}" for k, v in row.items() if k != "sha256"), flush=True)
                CSV.parent.mkdir(parents=True, exist_ok=True)
                with open(CSV, "w", newline="") as f:  # after every checkpoint: an interrupted run resumes
                    writer = csv.DictWriter(f, FIELDS)
                    writer.writeheader()
                    writer.writerows(sorted(rows.values(), key=lambda r: (r["run"], int(r["step"]))))
    ordered = sorted(rows.values(), key=lambda r: (r["run"], int(r["step"])))
    first = ordered[0]
    lines = [
        "# Checkpoints on held-out rain from each renderer",
        "",
        f"`python benchmarks/cross_renderer_val.py`, {datetime.date.today()}, {platform.machine()} CPU. "
        f"Y-PSNR (dB) / SSIM on the 20 held-out clean images (256-px centre crops) with fixed rain from each preset; "
        "`classic` is the independent renderer no run trains on. Rainy input: "
        + ", ".join(f"{p} {float(first[f'{p}_input_psnr']):.2f}" for p in PRESETS)
        + " dB.",
        "",
        "| run | step | light | heavy | classic |",
        "|---|---|---|---|---|",
    ]
    for r in ordered:
        cells = " | ".join(f"{float(r[f'{p}_psnr']):.2f} / {float(r[f'{p}_ssim']):.4f}" for p in PRESETS)
        lines.append(f"| {r['run']} | {r['step']} | {cells} |")
    TABLE.write_text("\n".join(lines) + "\n")
    print(f"wrote {CSV.relative_to(REPO)} and {TABLE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
