"""The Rain100L results page of our own training, made by one command: docs/results-rain100l.md.

    python benchmarks/results_rain100l.py [--limit N]

On the real Rain100L test set (the report only: never used for training, tuning or selection):
- Y-PSNR/SSIM of our Rain100L model (the shipped `sian-rain100l-ours`, or while its run goes on the run's
  current best.safetensors, labelled so) next to our synthetic models and the authors' SIAN and PReNet
  weights (imported from $SIAN_SHARED/weights into a temporary folder), with every stage's PSNR for the SIAN
  models (the paper's Fig. 6);
- the run's validation curve (20 held-out training pairs) against machine-hours and CPU-hours, with a
  log-linear fit of the validation PSNR and what it says the targets would cost, and the second run's
  (configs/rain100l-cpu-2.yaml, from the first's last state) on the same axes, its hours counted on;
- the second run's weight-averaging trials and the choice its rule made from them;
- the self-ensembles, from docs/results/self-ensemble/*.json (benchmarks/self_ensemble_rain100l.sh).

Scores are cached by weight-file sha256 in docs/results/rain100l-models.csv, so a re-run evaluates only
models whose weights changed (no timings here: they would come from different runs; docs/performance.md and
the self-ensemble runs time things side by side).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from omegaconf import OmegaConf
from results_files import measured_on, read_csv
from results_synth import (
    evaluate_with_stages,
    import_authors,
    save_figure,
    shared_folder,
    stage_figure,
)
from self_ensemble_table import table_lines

from sian.data import find_pairs
from sian.evaluate import evaluate, summarize
from sian.hub import WEIGHTS, load_model, resolve_weights
from sian.precision import describe_machine
from sian.training.stopping import last_timed, read_records, read_verdict, throughput, validation_curve
from sian.weights import read_weights_file, sha256_file, tensors_sha256

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RUN = REPO / "checkpoints/sian-rain100l-ours"
# The second run (configs/rain100l-cpu-2.yaml) starts from the first's last state: its hours follow the first's.
CONTINUATION = REPO / "checkpoints/sian-rain100l-ours-2"
# Its two weight-averaging trials, from the same state, identical but for train.ema_decay (the config's header).
EMA_TRIALS = REPO / "checkpoints/sian-rain100l-ours-2-ema-trial"
CACHE = DOCS / "results/rain100l-models.csv"
OURS = "sian-rain100l-ours"
# Our other models, scored when shipped: the first run's weights once the second run ships under their name, the
# synthetic-rain ones and the fine-tunes.
OTHER_MODELS = ("sian-rain100l-ours-v1", "sian-synth-light", "sian-synth-heavy", "sian-general", "sian-streaks-heavy",
                "sian-rain100h-style")  # fmt: skip
TARGETS = {"PReNet's published 37.48": 37.48, "the paper's 38.80": 38.80}
FIELDS = ["model", "label", "sha256", "tensors_sha256", "quantize", "images", "psnr", "ssim", "input_psnr",
          "input_ssim", "stage_psnr", "date", "machine"]  # fmt: skip


def candidates(shared: Path, tmp: Path) -> dict[str, tuple[Path, str, str, str, str]]:
    """name -> (weight file, quantisation of its release, label, sha256, tensors_sha256) for every model that
    is available.

    Either hash finds a model's row in the score cache. sha256 is of the file itself for ours, of the original
    checkpoint for the authors' (an imported file's bytes differ from import to import: safetensors orders its
    metadata freely); tensors_sha256 is of the tensors alone, so the run's best checkpoint and its shipped copy
    (same tensors, other metadata) share one row and shipping does not re-evaluate it."""
    found = {}
    if OURS in WEIGHTS and WEIGHTS[OURS].bundled:
        found[OURS] = (resolve_weights(OURS), "round", "shipped")
    elif (RUN / "best.safetensors").is_file():
        # A snapshot: the run may replace its best while this script runs, and the hash, the step and the
        # evaluated weights must all be of one file.
        snapshot = tmp / "run-best.safetensors"
        shutil.copyfile(RUN / "best.safetensors", snapshot)  # the trainer replaces it atomically (rename)
        step = read_weights_file(snapshot)[3].get("step", "?")
        found[OURS] = (snapshot, "round", f"run ended by its rule: its best, step {step}" if read_verdict(RUN)
                       else f"run in progress: its best so far, step {step}")  # fmt: skip
    for name in OTHER_MODELS:
        if name in WEIGHTS and WEIGHTS[name].bundled:
            found[name] = (resolve_weights(name), "round", "shipped")
    found = {name: (*entry, sha256_file(entry[0])) for name, entry in found.items()}
    for name, (path, quantization, source) in import_authors(shared, tmp).items():
        found[name] = (path, quantization, "authors' release", sha256_file(source))
    return {name: (*entry, tensors_sha256(read_weights_file(entry[0])[2])) for name, entry in found.items()}


def write_cache(cache: list[dict]) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k) or "" for k in FIELDS} for r in cache)


def score(
    name: str, path: Path, quantization: str, label: str, digest: str, tensors: str, pairs, cache: list[dict]
) -> dict:
    """The cached row of these exact weights (file ``digest`` or ``tensors`` digest) on these pairs, or a fresh
    evaluation appended to the cache."""
    for row in cache:
        if measured_on(row, digest, tensors) and int(row["images"]) == len(pairs) and row["quantize"] == quantization:
            if not row.get("tensors_sha256"):  # rows cached before the tensors' hash was recorded
                row["tensors_sha256"] = tensors
                write_cache(cache)
            # The page names the file it scored now (a shipped copy of a cached checkpoint has its own hash).
            return {**row, "model": name, "label": label, "sha256": digest}
    print(f"evaluating {name} ({label}) on {len(pairs)} Rain100L test pairs ...", flush=True)
    model = load_model(path)
    if hasattr(model, "scale_space"):  # SIAN: every stage's PSNR from the same pass, final stage as `sian eval`
        summary, stages = evaluate_with_stages(model, pairs, quantization)
    else:
        summary, stages = summarize(evaluate(model, pairs, quantization)), []
    row = {"model": name, "label": label, "sha256": digest, "tensors_sha256": tensors, "quantize": quantization,
           "images": summary.images,
           "psnr": f"{summary.psnr:.4f}", "ssim": f"{summary.ssim:.4f}", "input_psnr": f"{summary.input_psnr:.4f}",
           "input_ssim": f"{summary.input_ssim:.4f}", "stage_psnr": json.dumps([round(s, 4) for s in stages]),
           "date": datetime.date.today().isoformat(), "machine": describe_machine()}  # fmt: skip
    cache.append(row)
    write_cache(cache)
    return row


def curve_and_fit() -> tuple[list[dict], dict | None]:
    """The run's validation records and a log-linear fit of validation PSNR against machine-hours.

    Hours are CPU-equivalent (sian.training.stopping): steps taken on a lent GPU count as the hours the
    run's CPU took per step, so the curve and its fit stay in one unit.
    """
    log = RUN / "log.jsonl"
    if not log.is_file():
        return [], None
    val, _ = validation_curve(read_records(log))
    # The fit starts after the first machine-hour (warm-up and the steepest part of the curve) and uses the
    # running best, which is what selection keeps.
    points, best = [], -math.inf
    for r in val:
        best = max(best, r["val_psnr"])
        if r["hours"] >= 1:
            points.append((r["hours"], best))
    if len(points) < 3:
        return val, None
    hours, psnr = np.array(points).T
    slope, intercept = np.polyfit(np.log2(hours), psnr, 1)
    return val, {"per_doubling": float(slope), "intercept": float(intercept), "points": len(points),
                 "hours": (float(hours[0]), float(hours[-1]))}  # fmt: skip


def continuation_curve() -> list[dict]:
    """The second run's validation records, its machine-hours and CPU-hours counted on from the end of the first
    (whose last state it starts from), so both curves share one axis: the budget from scratch."""
    log, first = CONTINUATION / "log.jsonl", RUN / "log.jsonl"
    if not (log.is_file() and first.is_file()):
        return []
    before = read_records(first)
    curve, _ = validation_curve(before)
    hours, cpu_seconds = curve[-1]["hours"] if curve else 0.0, last_timed(before)["cpu_seconds"]
    val, _ = validation_curve(read_records(log))
    return [{**r, "hours": r["hours"] + hours, "cpu_seconds": r["cpu_seconds"] + cpu_seconds} for r in val]


def continuation_lines(continued: list[dict], first_hours: float) -> list[str]:
    """Where the second run stands, in the budget from scratch and in its own hours (after the first's
    ``first_hours``)."""
    if not continued:
        return []
    last = last_timed(read_records(CONTINUATION / "log.jsonl"))
    verdict, best = read_verdict(CONTINUATION), max(continued, key=lambda r: r["val_psnr"])
    own = continued[-1]["hours"] - first_hours
    where = f"ended by its stopping rule ({verdict})" if verdict else "goes on"
    return [f"The second run (`configs/rain100l-cpu-2.yaml`, from the first's last state, a new schedule) {where}: "
            f"trained to step {last['step']}; at its last validation (step {continued[-1]['step']}) {own:.2f} "
            f"machine-hours of its own, {continued[-1]['hours']:.2f} from scratch; best validation "
            f"{best['val_psnr']:.2f} dB at step {best['step']}."]  # fmt: skip


def ema_trial_lines() -> list[str]:
    """The weight-averaging trials and the choice the second run's rule makes from them."""
    scores, losses = {}, []
    for log in sorted(EMA_TRIALS.glob("*/log.jsonl")):
        records = read_records(log)
        val, _ = validation_curve(records)
        if val:
            decay = float(OmegaConf.load(log.with_name("config.yaml")).train.ema_decay)
            scores[decay] = val[-1]
            losses.append({r["step"]: r["loss"] for r in records if "loss" in r})
    if not scores:
        return []
    lines = ["Weight averaging in the second run was decided before its first step by two trials from the first "
             "run's last state, identical but for `train.ema_decay`, scored on the 20 held-out pairs (the rule in "
             "`configs/rain100l-cpu-2.yaml`: averaging if its score is at least the other's):", "",
             "| `train.ema_decay` | steps | validation Y-PSNR | machine-hours |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {decay:g} | {r['step']} | {r['val_psnr']:.3f} | {r['hours']:.2f} |" for decay, r in scores.items()]
    if len(scores) == 2:
        on, off = max(scores), min(scores)
        chosen = on if scores[on]["val_psnr"] >= scores[off]["val_psnr"] else off
        same = losses[0] == losses[1]
        lines += ["", f"The rule chose `train.ema_decay: {chosen:g}`."
                  + (" Both trials trained the same weights (their logged losses agree at every step): the averaging "
                     "changes only the weights that are validated, selected and shipped." if same else "")]  # fmt: skip
    else:
        lines += ["", "The other trial has not been scored yet."]
    return lines


def hours_for(fit: dict, psnr: float) -> float:
    return float(2 ** ((psnr - fit["intercept"]) / fit["per_doubling"])) if fit["per_doubling"] > 0 else math.inf


def curve_figure(val: list[dict], fit: dict | None, path: Path, continued: list[dict] = ()) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    hours = [r["hours"] for r in val]
    left.plot(hours, [r["val_psnr"] for r in val], "o-", color="C0", ms=3, label="first run (from scratch)")
    if continued:
        left.plot([r["hours"] for r in continued], [r["val_psnr"] for r in continued], "o-", color="C1", ms=3,
                  label="second run (from the first's last state)")  # fmt: skip
        right.plot([r["cpu_seconds"] / 3600 for r in continued], [r["val_psnr"] for r in continued], "o-",
                   color="C1", ms=3)  # fmt: skip
    left.axhline(val[0]["val_input_psnr"], color="grey", ls=":", label="rainy input")
    if fit:
        grid = np.geomspace(fit["hours"][0], max(30.0, hours[-1]), 50)
        left.plot(grid, fit["intercept"] + fit["per_doubling"] * np.log2(grid), "--", color="C2",
                  label="log-linear fit of the first run")  # fmt: skip
    left.set(
        xlabel="machine-hours (2-core CPU; GPU steps at its rate)",
        ylabel="Y-PSNR (dB)",
        title="held-out validation, 20 pairs",
    )
    right.plot([r["cpu_seconds"] / 3600 for r in val], [r["val_psnr"] for r in val], "o-", color="C0", ms=3)
    right.set(xlabel="CPU-hours (process CPU time)", ylabel="Y-PSNR (dB)", title="the same against CPU-hours")
    left.legend()
    save_figure(fig, (left, right), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N test pairs (a quick look)")
    args = parser.parse_args()
    shared = shared_folder()
    pairs = find_pairs(shared / "data/Rain100L_test").pairs[: args.limit or None]
    cache = read_csv(CACHE)
    with tempfile.TemporaryDirectory() as tmp:
        found = candidates(shared, Path(tmp))
        rows = [score(name, *entry, pairs, cache) for name, entry in found.items()]
        # Which run the scored weights come from (tools/ship_weights.py records it), and their step in it.
        metadata = read_weights_file(found[OURS][0])[3] if OURS in found else {}
        ours_step = int(metadata["step"]) if metadata else None
        ours_run = metadata.get("preset", "rain100l")
    (DOCS / "images").mkdir(parents=True, exist_ok=True)
    val, fit = curve_and_fit()
    continued = continuation_curve()
    if val:
        curve_figure(val, fit, DOCS / "images/rain100l-curve.png", continued)
    staged = [r for r in rows if json.loads(r["stage_psnr"])]
    if staged:
        stage_figure({r["model"]: json.loads(r["stage_psnr"]) for r in staged}, DOCS / "images/rain100l-stage-psnr.png")

    rainy = f"{float(rows[0]['input_psnr']):.2f} | {float(rows[0]['input_ssim']):.4f}"
    table = ["| model | weights | Y-PSNR | Y-SSIM | measured |", "|---|---|---|---|---|"]
    table.append(f"| rainy input | - | {rainy} | - |")
    for r in rows:
        table.append(f"| `{r['model']}` | {r['label']}, sha256 {r['sha256'][:12]} | {float(r['psnr']):.2f} | "
                     f"{float(r['ssim']):.4f} | {r['date']}, {r['machine']} |")  # fmt: skip
    stages = [f"| `{r['model']}` | " + " | ".join(f"{v:.2f}" for v in json.loads(r["stage_psnr"])) + " |"
              for r in staged]  # fmt: skip
    n_stages = max((len(json.loads(r["stage_psnr"])) for r in staged), default=0)

    budget = []
    if val:
        records = read_records(str(RUN / "log.jsonl"))
        last, verdict = last_timed(records), read_verdict(RUN)
        best = max(val, key=lambda r: r["val_psnr"])
        where = (f"ended by its stopping rule ({verdict}) at step {last['step']}" if verdict
                 else f"stands at step {last['step']}")  # fmt: skip
        budget.append(f"The run (`configs/rain100l-cpu.yaml`, from scratch on the 180 training pairs not held out) "
                      f"{where} after {val[-1]['hours']:.2f} CPU-equivalent machine-hours "
                      f"({last['wall_seconds'] / 3600:.2f} wall-clock, part on a lent GPU; "
                      f"{last['cpu_seconds'] / 3600:.2f} CPU-hours of the training processes); best "
                      f"validation {best['val_psnr']:.2f} dB at step {best['step']} "
                      f"(rainy input {best['val_input_psnr']:.2f}).")  # fmt: skip
        rates = throughput(records)
        budget.append("Throughput per machine, from the run's log (wall clock, validation and checkpoints included): "
                      + "; ".join(f"{machine}: {steps} steps at {steps / (hours * 3600):.3f} steps/s"
                                  for machine, (steps, hours) in rates.items()) + ".")  # fmt: skip
    ours = next((r for r in rows if r["model"] == OURS), None)
    if fit:
        budget.append(f"Log-linear fit of the best validation PSNR over {fit['points']} validations from "
                      f"{fit['hours'][0]:.1f} to {fit['hours'][1]:.1f} machine-hours: **{fit['per_doubling']:+.2f} dB "
                      f"per doubling** of the budget.")  # fmt: skip
        chosen = next((r for r in (continued if ours_run == "rain100l-2" else val) if r["step"] == ours_step), None)
        if ours and chosen:
            offset = float(ours["psnr"]) - chosen["val_psnr"]
            budget.append(f"On the selected checkpoint (step {ours_step}) the test set scores {offset:+.2f} dB against "
                          "validation. If the fit held (an extrapolation; a log-linear curve does not saturate, so "
                          "read these as lower bounds on the cost):")  # fmt: skip
            for text, target in TARGETS.items():
                budget.append(f"- {text} on test needs ~{target - offset:.2f} dB on validation: "
                              f"~{hours_for(fit, target - offset):.0f} machine-hours in all.")  # fmt: skip
    for section in (continuation_lines(continued, val[-1]["hours"] if val else 0.0), ema_trial_lines()):
        if section:
            budget += ["", *section]  # a paragraph of its own, not the last bullet's continuation
    subset = f"the first {len(pairs)} of the 100 pairs" if args.limit else "all 100 pairs"
    ensembles = table_lines()
    page = f"""# Rain100L: our own training against the authors'

Made by `python benchmarks/results_rain100l.py` ({datetime.date.today().isoformat()}), on {subset} of the real
Rain100L test set, which none of our models saw in training, tuning or checkpoint selection. Y-channel
PSNR/SSIM per [protocol.md](protocol.md), whole images, fp32, each release's own quantisation. Scores are
cached per weights (file hash, and hash of the tensors alone) in
[results/rain100l-models.csv](results/rain100l-models.csv) with the date and machine of their measurement.
`sian-rain100l-ours` is selected on 20 held-out *training* pairs only (`configs/splits/rain100l-train-val20.txt`);
its model card says how.

{chr(10).join(table)}

## Training budget and curve

{chr(10).join(budget) if budget else "No run log found (checkpoints/sian-rain100l-ours/log.jsonl)."}

![validation curve](images/rain100l-curve.png)

## Per-stage PSNR (the paper's Fig. 6)

| model | {" | ".join(f"stage {i + 1}" for i in range(n_stages))} |
|---|{"---|" * n_stages}
{chr(10).join(stages)}

![per-stage PSNR](images/rain100l-stage-psnr.png)

## Self-ensembles

`bash benchmarks/self_ensemble_rain100l.sh`: one `sian eval --tta none,flip2,flip4` per model, all 100 images;
four forward passes per image serve the three modes (each scored exactly as its own run), and each mode is
timed by the passes it needs, in the same run, so the cost column is a same-run ratio.

{chr(10).join(ensembles) if ensembles else "Not run yet."}
"""
    (DOCS / "results-rain100l.md").write_text(page)
    print(page)


if __name__ == "__main__":
    main()
