"""Every model on the same fixed validation sets: what a run's shipping rule compares.

    python benchmarks/validate_models.py [--config CONFIG ...] [--model NAME_OR_FILE ...] [--limit N]

Each config's validation set is built exactly as its training run builds it for checkpoint selection
(`sian.training.validation.build_validation_set`; defaults: configs/sian-general.yaml and
configs/sian-streaks-heavy.yaml, each the 20 held-out Rain100L training pairs plus 20 held-out photos with
held-out streak-bank rain), and every model is scored on it the way training scores it (whole images,
fp32, Y channel): the mean and each source's own mean, beside the rainy input's. Models: our shipped ones, the
authors' SIAN Rain100L and Rain100H weights (imported from $SIAN_SHARED/weights into a temporary folder), and
any weight file named with --model. No test image is involved: this chooses, the test sets only report.

Rows go to docs/results/validation.csv as they finish, keyed by the config and by either hash of the
weights (the file's sha256, or the tensors' alone, so a run's checkpoint and its shipped copy share one row), so a
re-run scores only what is new (resumable); the table is printed and written next to it as .md. Each run's
shipping rule (in its config) says which comparison of this table ships it.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from results_files import VALIDATION, measured_on, read_csv
from results_synth import shared_folder

from sian.convert import import_weights
from sian.hub import WEIGHTS, load_model, resolve_weights
from sian.metrics import psnr_y
from sian.precision import describe_machine
from sian.training import load_config
from sian.training.validation import build_validation_set, validate, validation_sources
from sian.weights import read_weights_file, sha256_file, tensors_sha256

REPO = Path(__file__).resolve().parents[1]
CSV = VALIDATION
CONFIGS = ["configs/sian-general.yaml", "configs/sian-streaks-heavy.yaml"]
RAINY = "rainy input"  # the row of a validation set's input, scored without a model
AUTHORS = {"sian-rain100l": "sian_authors/rain100l.pth", "sian-rain100h": "sian_authors/rain100h.pth"}
# psnr: the mean over every image of the set. psnr_groups: every validation group's own mean (JSON), as the
# trainer logs them (val_psnr_<group>): with several pair folders each folder is a group (Rain100L_train,
# RainTrainH_12), the photos with rain "synthetic". A run that selects on some groups (data.val_select) selects on
# those groups' images, so its trainer's val_psnr is not this psnr; shipping rules compare groups.
FIELDS = ["config", "model", "sha256", "tensors_sha256", "images", "psnr", "ssim", "psnr_pairs", "psnr_synthetic",
          "input_psnr", "date", "machine", "psnr_groups"]  # fmt: skip


def models(extra: list[str], shared: Path, tmp: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (weight file, sha256, tensors_sha256): the two hashes that find a model's cached rows.

    sha256 is of the file for ours and of the original checkpoint for the authors' (an imported file's bytes
    differ from import to import); tensors_sha256 is of the tensors alone, so a run's best checkpoint and its
    shipped copy (same tensors, other metadata) are one model to the cache (as in benchmarks/results_rain100l.py).
    """
    found = {name: (resolve_weights(name), entry.sha256) for name, entry in WEIGHTS.items() if entry.bundled}
    for name, relative in AUTHORS.items():
        source = shared / "weights" / relative
        if source.is_file():
            found[name] = (import_weights(source, name, dest_dir=tmp), sha256_file(source))
    for item in extra:
        path = Path(item) if Path(item).is_file() else resolve_weights(item)
        found[item] = (path, sha256_file(path))
    return {name: (path, digest, tensors_sha256(read_weights_file(path)[2])) for name, (path, digest) in found.items()}


def backfill_tensors(rows: list[dict], candidates: dict[str, tuple[Path, str, str]]) -> bool:
    """Give rows cached before the tensors' hash was recorded that hash, found by their file hash, so that every
    candidate (a shipped copy listed before its checkpoint included) matches by either hash; whether any changed."""
    by_file = {digest: tensors for _, digest, tensors in candidates.values()}
    missing = [row for row in rows if not row.get("tensors_sha256") and row["sha256"] in by_file]
    for row in missing:
        row["tensors_sha256"] = by_file[row["sha256"]]
    return bool(missing)


def is_cached(rows: list[dict], digest: str, tensors: str, **key: str) -> bool:
    """Whether a row of these weights (file or tensors hash) with these other ``key`` values exists.

    Compared as text: rows read from the CSV hold strings, rows measured in this run may hold numbers."""
    return any(
        measured_on(row, digest, tensors) and all(str(row[field]) == str(value) for field, value in key.items())
        for row in rows
    )


def write_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Rewrite the cache after every model, so an interrupted run keeps what it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_table(path: Path, script: str, table: list[str]) -> None:
    """The markdown table beside the CSV (``path`` with .md), naming the script that made it; printed too."""
    text = "\n".join(table) + "\n"
    path.with_suffix(".md").write_text(f"Made by `python benchmarks/{script}`.\n\n{text}")
    print(text)


def rainy_row(config: str, val) -> dict:
    """A row for the rainy input of ``config``'s validation set: its Y-PSNR over every image and per group."""
    inputs = [psnr_y(rainy, clean) for rainy, clean in zip(val.rainy, val.clean, strict=True)]
    groups = {group: float(np.mean([p for p, g in zip(inputs, val.groups, strict=True) if g == group]))
              for group in sorted(set(val.groups))} if len(set(val.groups)) > 1 else {}  # fmt: skip
    mean = f"{np.mean(inputs):.4f}"
    return {"config": config, "model": RAINY, "sha256": "-", "tensors_sha256": "-", "images": str(len(val)),
            "psnr": mean, "ssim": "nan", "psnr_pairs": f"{groups.get('pairs', float('nan')):.4f}",
            "psnr_synthetic": f"{groups.get('synthetic', float('nan')):.4f}", "input_psnr": mean,
            "psnr_groups": json.dumps({g: round(v, 4) for g, v in groups.items()}),
            "date": datetime.date.today().isoformat(), "machine": "-"}  # fmt: skip


def group_text(row: dict) -> str:
    """Each validation group's mean: Rain100L pairs and streak rain for rows made before groups were recorded."""
    groups = json.loads(row["psnr_groups"]) if row.get("psnr_groups") else {
        "Rain100L pairs": float(row["psnr_pairs"]), "streak rain": float(row["psnr_synthetic"])}  # fmt: skip
    return ", ".join(f"{name} {value:.2f}" for name, value in groups.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help=f"default: {' and '.join(CONFIGS)}")
    parser.add_argument("--model", action="append", default=[], help="a weight file or name, besides the defaults")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images of each source (a quick look)")
    parser.add_argument("--csv", type=Path, default=CSV)
    args = parser.parse_args()
    configs = args.config or CONFIGS
    shared = shared_folder()
    rows = read_csv(args.csv)  # the resumable cache
    with tempfile.TemporaryDirectory() as tmp:
        candidates = models(args.model, shared, Path(tmp))
        if backfill_tensors(rows, candidates):
            write_rows(args.csv, FIELDS, rows)
        for config in configs:
            data = load_config(REPO / config).data
            if args.limit:
                data.val_count = args.limit
            images = str(len(validation_sources(data)))  # counted without reading: the set is built only if needed
            todo = {name: found for name, found in candidates.items()
                    if not is_cached(rows, *found[1:], config=config, images=images)}  # fmt: skip
            rainy = not any(r["config"] == config and r["model"] == RAINY and r["images"] == images for r in rows)
            val = build_validation_set(data) if todo or rainy else None
            if rainy:  # the rainy input itself, group by group: what every model's scores compare with
                rows.append(rainy_row(config, val))
                write_rows(args.csv, FIELDS, rows)
            for name, (path, sha256, tensors) in todo.items():
                if is_cached(rows, sha256, tensors, config=config, images=images):
                    continue  # the same tensors under another name, scored a moment ago
                scores = validate(load_model(path), val, torch.device("cpu"))
                row = {"config": config, "model": name, "sha256": sha256, "tensors_sha256": tensors, "images": len(val),
                       "psnr": f"{scores['val_psnr']:.4f}", "ssim": f"{scores['val_ssim']:.4f}",
                       "psnr_pairs": f"{scores.get('val_psnr_pairs', float('nan')):.4f}",
                       "psnr_synthetic": f"{scores.get('val_psnr_synthetic', float('nan')):.4f}",
                       "input_psnr": f"{scores['val_input_psnr']:.4f}",
                       "psnr_groups": json.dumps({key[9:]: round(value, 4) for key, value in scores.items()
                                                  if key.startswith("val_psnr_") and key != "val_psnr_all"}),
                       "date": datetime.date.today().isoformat(), "machine": describe_machine()}  # fmt: skip
                rows.append(row)
                print(f"{config} {name}: {row['psnr']} dB ({row['psnr_groups']}; input {row['input_psnr']})")
                write_rows(args.csv, FIELDS, rows)
    table = ["| validation set | model | images | Y-PSNR | SSIM | each group's Y-PSNR | rainy input | measured |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["config"], -float(r["psnr"]))):
        table.append(f"| `{r['config']}` | `{r['model']}` | {r['images']} | {float(r['psnr']):.2f} | "
                     f"{float(r['ssim']):.4f} | {group_text(r)} | {float(r['input_psnr']):.2f} | "
                     f"{r['date']}, {r['machine']} |")  # fmt: skip
    write_table(args.csv, "validate_models.py", table)


if __name__ == "__main__":
    main()
