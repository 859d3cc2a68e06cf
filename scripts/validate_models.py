"""Issue 15, item 3: every model on the same fixed validation sets, to decide what ships and what is the default.

    python scripts/validate_models.py [--config CONFIG ...] [--model NAME_OR_FILE ...] [--limit N]

Each config's validation set is built exactly as its training run builds it for checkpoint selection
(`sian.training.validation.build_validation_set`: for issue 15, the 20 held-out Rain100L training pairs plus 20
held-out photos with held-out streak-bank rain; defaults: configs/sian-general.yaml and
configs/sian-streaks-heavy.yaml), and every model is scored on it the way training scores it (whole images,
fp32, Y channel): the mean and each source's own mean, beside the rainy input's. Models: our shipped ones, the
authors' SIAN Rain100L and Rain100H weights (imported from $SIAN_SHARED/weights into a temporary folder), and
any weight file named with --model. No test image is involved: this chooses, the test sets only report.

Rows go to docs/results/issue15-validation.csv as they finish, keyed by the config and by either hash of the
weights (the file's sha256, or the tensors' alone, so a run's checkpoint and its shipped copy share one row), so a
re-run scores only what is new (resumable); the table is printed and written next to it as .md,
followed by what the rule committed in docs/synthetic-rain.md (issue 15 section, rules 1 and 2) makes of it: which
candidate ships and which model becomes the default. Rule 3 (the gallery's veto) is by eye and stays with the reader.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import tempfile
from pathlib import Path

import torch
from results_synth import shared_folder  # scripts/ is on sys.path when this script runs
from ship_weights import REPLACES, RUN_NAMES, VALIDATION, full_set_rows, measured_on, read_csv

from sian.convert import import_weights
from sian.hub import WEIGHTS, load_model, resolve_weights
from sian.precision import describe_machine
from sian.training import load_config
from sian.training.validation import build_validation_set, validate, validation_sources
from sian.weights import read_weights_file, sha256_file, tensors_sha256

REPO = Path(__file__).resolve().parents[1]
CSV = VALIDATION
CONFIGS = ["configs/sian-general.yaml", "configs/sian-streaks-heavy.yaml"]
AUTHORS = {"sian-rain100l": "sian_authors/rain100l.pth", "sian-rain100h": "sian_authors/rain100h.pth"}
GENERAL = "configs/sian-general.yaml"
# Rule 2 draws the default from shipped models trained at least partly on synthetic rain.
ON_SYNTHETIC = {name for preset, name in RUN_NAMES.items() if preset != "rain100l"}
FIELDS = ["config", "model", "sha256", "tensors_sha256", "images", "psnr", "ssim", "psnr_pairs", "psnr_synthetic",
          "input_psnr", "date", "machine"]  # fmt: skip


def models(extra: list[str], shared: Path, tmp: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (weight file, sha256, tensors_sha256): the two hashes that find a model's cached rows.

    sha256 is of the file for ours and of the original checkpoint for the authors' (an imported file's bytes
    differ from import to import); tensors_sha256 is of the tensors alone, so a run's best checkpoint and its
    shipped copy (same tensors, other metadata) are one model to the cache (as in scripts/results_rain100l.py).
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
    path.with_suffix(".md").write_text(f"Made by `python scripts/{script}` (issue 15).\n\n{text}")
    print(text)


def run_name(model: str) -> str:
    """A candidate given as its run's checkpoint (checkpoints/<run>/best.safetensors) goes by the run's name."""
    path = Path(model)
    return path.parent.name if path.suffix == ".safetensors" else model


def decide(rows: list[dict], shipped: set[str]) -> list[str]:
    """Rules 1 and 2 of the committed issue 15 rule applied to the validation rows, as markdown lines.

    ``shipped`` names the models in the package now. Only rows over a config's full validation set count (a
    ``--limit`` look does not); of several rows for one model (a candidate scored at different checkpoints), the
    last written is the one that counts, as the CSV grows in the order the scores were taken.
    """
    psnr = {(r["config"], run_name(r["model"])): float(r["psnr"]) for r in full_set_rows(rows)}
    lines, ships, pending = [], set(), []
    for candidate, (config, incumbent) in REPLACES.items():
        missing = [name for name in (candidate, incumbent) if (config, name) not in psnr]
        if missing:
            lines.append(f"- `{candidate}`: not decided, no score on `{config}` for {', '.join(missing)}")
            pending.append(candidate)
            continue
        new, old = psnr[(config, candidate)], psnr[(config, incumbent)]
        verdict = "ships" if new > old else "does not ship"
        lines.append(
            f"- `{candidate}` {verdict} (rule 1): {new:.2f} dB on `{config}` against `{incumbent}`'s {old:.2f}"
        )
        if new > old:
            ships.add(candidate)
    pool = sorted(name for name in (shipped & ON_SYNTHETIC) | ships if (GENERAL, name) in psnr)
    if not pool:
        lines.append("- default: not decided, no eligible shipped model is scored on the general set")
        return lines
    best = max(pool, key=lambda name: psnr[(GENERAL, name)])
    lines.append(
        f"- default (rule 2): `{best}`, {psnr[(GENERAL, best)]:.2f} dB on `{GENERAL}`, the highest of "
        f"{', '.join(f'`{n}`' for n in pool)}; unless the real-rain gallery vetoes it (rule 3, by eye)"
    )
    if pending:  # rule 2 draws from what ships: a candidate decided later can still take the default
        lines.append(f"- provisional: {', '.join(f'`{n}`' for n in pending)} not decided yet; the default is "
                     "decided again once it is scored")  # fmt: skip
    return lines


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
            val = build_validation_set(data) if todo else None
            for name, (path, sha256, tensors) in todo.items():
                scores = validate(load_model(path), val, torch.device("cpu"))
                row = {"config": config, "model": name, "sha256": sha256, "tensors_sha256": tensors, "images": len(val),
                       "psnr": f"{scores['val_psnr']:.4f}", "ssim": f"{scores['val_ssim']:.4f}",
                       "psnr_pairs": f"{scores.get('val_psnr_pairs', float('nan')):.4f}",
                       "psnr_synthetic": f"{scores.get('val_psnr_synthetic', float('nan')):.4f}",
                       "input_psnr": f"{scores['val_input_psnr']:.4f}",
                       "date": datetime.date.today().isoformat(), "machine": describe_machine()}  # fmt: skip
                rows.append(row)
                print(f"{config} {name}: {row['psnr']} dB (pairs {row['psnr_pairs']}, synthetic "
                      f"{row['psnr_synthetic']}; input {row['input_psnr']})")  # fmt: skip
                write_rows(args.csv, FIELDS, rows)
    table = ["| validation set | model | images | Y-PSNR | SSIM | Rain100L pairs | streak rain | rainy input | "
             "measured |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["config"], -float(r["psnr"]))):
        table.append(f"| `{r['config']}` | `{r['model']}` | {r['images']} | {float(r['psnr']):.2f} | "
                     f"{float(r['ssim']):.4f} | {float(r['psnr_pairs']):.2f} | {float(r['psnr_synthetic']):.2f} | "
                     f"{float(r['input_psnr']):.2f} | {r['date']}, {r['machine']} |")  # fmt: skip
    rule = ["", "What the committed rule (docs/synthetic-rain.md, issue 15 section) makes of this table:", ""]
    shipped = {name for name, entry in WEIGHTS.items() if entry.bundled}
    write_table(args.csv, "validate_models.py", table + rule + decide(rows, shipped))


if __name__ == "__main__":
    main()
