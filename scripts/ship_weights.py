"""Ship one of our trained models inside the package (issue 4): weights, manifest entry and model card.

    python scripts/ship_weights.py light            # from checkpoints/sian-synth-light/best.safetensors
    python scripts/ship_weights.py heavy --source checkpoints/sian-synth-heavy/best.safetensors
    python scripts/ship_weights.py light --select classic   # the committed checkpoint best on classic rain

Writes src/sian/pretrained/sian-synth-<preset>.safetensors (float32, metadata from the training log only, so
shipping the same checkpoint twice gives the same bytes), its sha256 into src/sian/pretrained/manifest.json,
and the model card src/sian/pretrained/sian-synth-<preset>.md. Rain100L figures in the card and the manifest
come from docs/results/synth-rain100l.csv (written by scripts/results_synth.py) when it holds a row for this
exact file; otherwise the card says they are not measured yet.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import tempfile
from pathlib import Path

import torch

from sian.synth import rain as rain_module
from sian.training import load_config
from sian.weights import read_weights_file, save_weights, sha256_file

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "src/sian/pretrained"
RESULTS = REPO / "docs/results/synth-rain100l.csv"


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def training_record(records: list[dict], step: int) -> dict:
    """Validation and budget figures of the run at the selected ``step``."""
    val = [r for r in records if "val_psnr" in r and r["step"] == step]
    if not val:
        raise SystemExit(f"no validation record for step {step} in the run's log.jsonl")
    return val[-1]


HEAVY_LIMIT = """
- It was trained to undo a haze veil as well as streaks, and on light rain without haze (Rain100L) it scores
  below the rainy input. Use it for downpours only; `sian-synth-light` otherwise."""


def init_provenance(records: list[dict], init: str | None) -> str:
    """How the run started: from scratch, or fine-tuned from a named file (exact file when the log says)."""
    if not init:
        return "trained from scratch"
    start = next((r for r in records if "init_sha256" in r), None)
    if start is None:  # runs started before the trainer logged it
        return (f"fine-tuned from `{init}` (the file packaged under that name when the run started; see "
                f"`git log -- src/sian/pretrained/{init}.safetensors`)")  # fmt: skip
    return f"fine-tuned from `{init}` (step {start['init_step']}, sha256 {start['init_sha256'][:16]}...)"


def same_weights(path: Path, state: dict, step: int) -> bool:
    if not path.is_file():
        return False
    _, _, shipped, metadata = read_weights_file(path)
    return (
        metadata.get("step") == str(step)
        and shipped.keys() == state.keys()
        and all(torch.equal(shipped[k], state[k]) for k in state)
    )


def rain100l_row(name: str, sha256: str) -> dict | None:
    if not RESULTS.is_file():
        return None
    with open(RESULTS) as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == name and r.get("sha256") == sha256]
    return rows[-1] if rows else None


def select_on_classic(preset: str, tmp: Path) -> tuple[Path, str]:
    """The committed checkpoint of the run with the best held-out classic-rain PSNR, written under ``tmp``."""
    from cross_renderer_val import CSV, candidates  # scripts/ is on sys.path when this script runs

    with open(CSV) as f:
        rows = [r for r in csv.DictReader(f) if r["run"] == f"sian-synth-{preset}"]
    if not rows:
        raise SystemExit(f"no sian-synth-{preset} rows in {CSV}: run python scripts/cross_renderer_val.py first")
    best = max(rows, key=lambda r: float(r["classic_psnr"]))
    blobs = {hashlib.sha256(blob).hexdigest(): blob for _, blob in candidates(preset)}
    path = tmp / "selected.safetensors"
    path.write_bytes(blobs[best["sha256"]])
    return path, (
        f"best held-out classic-rain PSNR among {len(rows)} committed checkpoints, "
        f"{float(best['classic_psnr']):.2f} dB from {float(best['classic_input_psnr']):.2f}; "
        "`python scripts/cross_renderer_val.py`"
    )


def preset_table() -> str:
    doc = rain_module.__doc__
    start, end = doc.index("=========="), doc.rindex("==========")
    return doc[start : doc.index("\n", end)].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=["light", "heavy"])
    parser.add_argument("--source", type=Path, help="default: checkpoints/sian-synth-<preset>/best.safetensors")
    parser.add_argument("--select", choices=["val", "classic"], default="val",
                        help="val: the run's best on its own held-out rain (best.safetensors); classic: the "
                             "committed checkpoint best on held-out classic rain "
                             "(docs/results/cross-renderer-val.csv)")  # fmt: skip
    args = parser.parse_args()
    name = f"sian-synth-{args.preset}"
    run = REPO / "checkpoints" / name
    with tempfile.TemporaryDirectory() as tmp:
        source, selection = args.source or run / "best.safetensors", "best held-out validation PSNR of the run"
        if args.select == "classic":
            source, selection = select_on_classic(args.preset, Path(tmp))
        arch, config, state, metadata = read_weights_file(source)
    step = int(metadata["step"])
    records = read_log(run)
    record = training_record(records, step)
    last = [r for r in records if "cpu_seconds" in r][-1]
    train_config = load_config(run / "config.yaml")
    cpu_hours, wall_hours = record["cpu_seconds"] / 3600, record["wall_seconds"] / 3600

    target = PRETRAINED / f"{name}.safetensors"
    if not same_weights(target, state, step):  # safetensors orders metadata arbitrarily: rewrite only on change
        save_weights(target, state, arch, config, name=name, variant=train_config.model.variant, preset=args.preset,
                     step=str(step), val_psnr=f"{record['val_psnr']:.4f}", cpu_hours=f"{cpu_hours:.2f}",
                     licence="MIT (trained by the sian project)")  # fmt: skip
    digest = sha256_file(target)
    row = rain100l_row(name, digest)
    reference = f"{float(row['psnr']):.2f} / {float(row['ssim']):.3f}" if row else "not measured"

    manifest_path = PRETRAINED / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[name] = {
        "variant": train_config.model.variant, "sha256": digest, "preset": args.preset, "step": step,
        "dataset": f"synthetic {args.preset} rain (BSDS500*, Kodak24, McMaster18)", "reference": reference,
    }  # fmt: skip
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")

    data, optim, train = train_config.data, train_config.optim, train_config.train
    results = (
        f"Rain100L test ({row['images']} real pairs, Y channel, never seen in training or selection): "
        f"**{float(row['psnr']):.2f} dB / {float(row['ssim']):.4f}** "
        f"(rainy input {float(row['input_psnr']):.2f} / {float(row['input_ssim']):.4f}), "
        f"measured by `python scripts/results_synth.py` on {row['date']} ({row['machine']}); full table in "
        "docs/results-synth.md."
        if row
        else "Rain100L: not measured for this file yet (run `python scripts/results_synth.py`)."
    )
    card = f"""# {name}

SIAN (the paper's release configuration, {sum(t.numel() for t in state.values()):,} parameters)
{init_provenance(records, train_config.model.init)} by the sian project
on clean photos with **synthetic {args.preset} rain** from `sian.synth`. Licence: MIT, like the code.
Shipped inside the package: `sian derain` uses `sian-synth-light` by default; `--model sian-synth-heavy`
for downpours.

## Data
- Clean images: BSDS500 (all splits) without the 72 images that are Rain100L/H test backgrounds
  (`OVERLAP_with_Rain100LH_test_backgrounds.tsv`), Kodak24 and McMaster18: {data.val_holdout} of them held out
  (a fixed draw, `data.val_holdout`) with fixed synthetic rain as the validation set; the rest for training.
- No real rainy image and no Rain100L image (train or test) was used for training, tuning or checkpoint selection.

## Synthetic rain (`{args.preset}` preset, rendered on the fly for every patch, one seed per sample)
```
{preset_table()}
```

## Training
- Loss: negative SSIM summed over the 6 stages (the paper's). Adam lr {optim.lr:g}, betas {list(optim.betas)},
  {optim.schedule} schedule over {train.steps} steps with {optim.warmup_steps} warm-up steps,
  gradient clip {optim.grad_clip:g}.
- Patches {data.patch_size}x{data.patch_size}, batch {train.batch_size}, horizontal flips; seed {train.seed}.
- Selected checkpoint: step {step} of {train.steps} ({selection}).
- The run went on to step {last["step"]} ({last["cpu_seconds"] / 3600:.2f} CPU-hours); its log holds every validation.
- Budget to this checkpoint: {cpu_hours:.2f} CPU-hours of this run ({wall_hours:.2f} wall-clock hours) on a
  2-core x86-64 CPU.
- Config: `configs/{name}.yaml`; log: `checkpoints/{name}/log.jsonl`;
  resume: `bash scripts/train_synth.sh {args.preset}`.

## Results
- Held-out synthetic validation ({data.val_holdout} images, {data.val_crop}x{data.val_crop} centre crops):
  {record["val_psnr"]:.2f} dB / {record["val_ssim"]:.4f} (rainy input {record["val_input_psnr"]:.2f} dB).
- {results}

## Limits
- Trained on synthetic streaks only: real rain with fog, drops on the lens, splashes or night-time lighting is
  outside what it has seen; look at docs/results-synth.md for real webcam frames.
- The authors' weights (trained on Rain100L's own training pairs) score higher on Rain100L; ours never saw that
  distribution.{HEAVY_LIMIT if args.preset == "heavy" else ""}
"""
    (PRETRAINED / f"{name}.md").write_text(card)
    print(f"shipped {source} (step {step}) as {target} sha256 {digest[:16]}...; Rain100L: {reference}")


if __name__ == "__main__":
    main()
