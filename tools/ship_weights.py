"""Ship one of our trained models inside the package: weights, manifest entry and model card.

    python tools/ship_weights.py light            # from checkpoints/sian-synth-light/best.safetensors
    python tools/ship_weights.py heavy --source checkpoints/sian-synth-heavy/best.safetensors
    python tools/ship_weights.py light --select classic   # the committed checkpoint best on classic rain
    python tools/ship_weights.py rain100l-2       # sian-rain100l-ours from checkpoints/sian-rain100l-ours-2
    python tools/ship_weights.py rain100l --source src/sian/pretrained/sian-rain100l-ours.safetensors
                                                  # the first Rain100L run's weights as sian-rain100l-ours-v1
    python tools/ship_weights.py general          # sian-general (and streaks-heavy: sian-streaks-heavy)
    python tools/ship_weights.py raintrainh --name sian-heavy   # or sian-rain100h-style, as its rule says

Writes src/sian/pretrained/<name>.safetensors (float32, metadata from the training log only, so shipping the
same checkpoint twice gives the same bytes), its sha256 into src/sian/pretrained/manifest.json, and the model
card src/sian/pretrained/<name>.md. Rain100L test figures in the card and the manifest come from
docs/results/synth-rain100l.csv (benchmarks/results_synth.py) or docs/results/rain100l-models.csv
(benchmarks/results_rain100l.py) when one holds a row for these exact weights (this file's hash, or the hash of its
tensors: a score of the run's best.safetensors counts for its shipped copy); otherwise the card says they are not
measured yet: run the results script, ship again. The heavy-rain model's card also gives its held-out heavy-rain
gain from docs/results/heavy-rain-test.csv (benchmarks/heavy_rain_test.py), found the same way.
tests/test_model_cards.py holds every shipped card to those tables.

A model that replaces a shipped one (results_files.REPLACES) ships only if it beats that model on the validation
set both were judged on (benchmarks/validate_models.py --config CONFIG), and only once the model it replaces
ships under a name of its own: the second Rain100L run takes the name sian-rain100l-ours, so the first run's
weights ship first as sian-rain100l-ours-v1 (the second command above), then the run, then
benchmarks/results_rain100l.py scores it on the test set once and ship again to quote it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

from sian.inference import DEFAULT_MODEL
from sian.synth import rain as rain_module
from sian.training import load_config
from sian.training.datasets import read_pair_names
from sian.training.stopping import last_timed, read_records, read_verdict, validation_curve
from sian.weights import read_weights_file, save_weights, sha256_file, tensors_sha256

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the cards quote the benchmarks' tables
from results_files import (  # noqa: E402
    REPLACES,
    RUN_NAMES,
    SHIPS_AS,
    VALIDATION,
    full_set_rows,
    measured_on,
    read_csv,
    run_name,
    shipped_name,
)

PRETRAINED = REPO / "src/sian/pretrained"
RESULTS = (REPO / "docs/results/synth-rain100l.csv", REPO / "docs/results/rain100l-models.csv")
HEAVY_TEST = REPO / "docs/results/heavy-rain-test.csv"
SOURCE = "the sian source repository"  # model cards ship in the wheel, where the repository's paths do not exist
MIXTURES = ("general", "streaks-heavy")  # real Rain100L pairs and streak-bank rain, fine-tuned
# The names the Rain100H-style run may ship under (its config's shipping rule picks one).
RAINTRAINH_NAMES = ("sian-heavy", "sian-rain100h-style")
# What each model that another replaces was, for the replacing card.
WHAT_IT_WAS = {"sian-synth-light": "trained from scratch on our formula-rendered rain",
               "sian-synth-heavy": "trained from scratch on our formula-rendered rain",
               "sian-streaks-heavy": "fine-tuned from our Rain100L model on dense streak-bank rain",
               "sian-rain100l-ours-v1": "the first Rain100L run's pick, trained from scratch"}  # fmt: skip
WHAT_IT_IS = {"sian-general": "fine-tuned from our Rain100L model on real pairs and real streak layers",
              "sian-streaks-heavy": "fine-tuned from our Rain100L model on real pairs and real streak layers",
              "sian-heavy": "fine-tuned from it on the rain of Rain100H's own training pairs",
              "sian-rain100l-ours": "a second run from that run's last state, on the same pairs"}  # fmt: skip
# The config and the launcher of each run, as a reader of the card would type them.
# (others: configs/<run name>.yaml)
CONFIGS = {"rain100l": "configs/rain100l-cpu.yaml", "rain100l-2": "configs/rain100l-cpu-2.yaml"}


def config_path(preset: str) -> str:
    return CONFIGS.get(preset, f"configs/{RUN_NAMES[preset]}.yaml")


def training_record(records: list[dict], step: int) -> dict:
    """Validation and budget figures of the run at the selected ``step``."""
    val = [r for r in records if "val_psnr" in r and r["step"] == step]
    if not val:
        raise SystemExit(f"no validation record for step {step} in the run's log.jsonl")
    return val[-1]


HEAVY_LIMIT = """
- It was trained to undo a haze veil as well as streaks, and on light rain without haze (Rain100L) it scores
  below the rainy input. Use it for downpours only; the default model (`{default}`) otherwise."""


def how_to_use(name: str, use: str) -> str:
    """The card's usage line: whether `sian derain` picks this model by default (sian.inference.DEFAULT_MODEL)."""
    if name == DEFAULT_MODEL:
        return f"`sian derain` uses it by default (for {use})"
    return f"`sian derain --model {name}` for {use} (the default model is `{DEFAULT_MODEL}`)"


def init_provenance(records: list[dict], init: str | None) -> str:
    """How the run started: from scratch, or fine-tuned from a named file (exact file when the log says)."""
    if not init:
        return "trained from scratch"
    start = next((r for r in records if "init_sha256" in r), None)
    if start is None:  # runs started before the trainer logged it
        return f"fine-tuned from `{init}` (the file packaged under that name when the run started)"
    # The card ships in the wheel: it names the weights, not the repository path they were read from.
    name = Path(init).parent.name if "/" in init else init
    return f"fine-tuned from `{name}` (its step-{start['init_step']} checkpoint, sha256 {start['init_sha256'][:16]}...)"


def same_weights(path: Path, state: dict, step: int) -> bool:
    if not path.is_file():
        return False
    _, _, shipped, metadata = read_weights_file(path)
    return (
        metadata.get("step") == str(step)
        and shipped.keys() == state.keys()
        and all(torch.equal(shipped[k], state[k]) for k in state)
    )


def rows_of(path: Path, sha256: str, tensors: str) -> list[dict]:
    """The rows of a results CSV measured on these exact weights; none when the CSV does not exist."""
    return [r for r in read_csv(path) if measured_on(r, sha256, tensors)]


def rain100l_row(name: str, sha256: str, tensors: str) -> tuple[dict, str] | None:
    """The Rain100L test row of these exact weights (all 100 pairs) and the script that measured it: found by
    their hashes, whatever name they were scored under (a model shipped again under a versioned name)."""
    for path in RESULTS:
        rows = [r for r in rows_of(path, sha256, tensors) if int(r["images"]) == 100]
        if rows:
            script = "results_synth.py" if path.name.startswith("synth") else "results_rain100l.py"
            return rows[-1], script
    return None


def heavy_test_line(sha256: str, tensors: str) -> str:
    """The held-out heavy-rain figure of these weights, as a line of the card."""
    rows = rows_of(HEAVY_TEST, sha256, tensors)
    if not rows:
        return "Held-out heavy rain: not measured for this file yet."
    row = rows[-1]
    return (
        f"Held-out heavy streak-bank rain ({row['images']} photos no model of ours trained on or was selected by, "
        f"held-out streak sets only, rainy input 14-20 dB): **{float(row['input_psnr']):.2f} -> "
        f"{float(row['psnr']):.2f} dB ({float(row['gain']):+.2f})**, SSIM {float(row['ssim']):.4f}, measured with "
        f"{SOURCE}'s results benchmark on {row['date']} ({row['machine']})."
    )


def what_changed(name: str, sha256: str, tensors: str) -> str:
    """What changed: the model this one replaced, both scored on the same
    validation set (benchmarks/validate_models.py; the last full-set row of each counts), and how to load the older
    weights."""
    config, incumbent = REPLACES[name]
    ours, theirs = validation_rows(config, (sha256, tensors), incumbent)
    scores = (
        f"On the same {ours[-1]['images']} validation images ({validation_words(config)}) this model scores "
        f"{float(ours[-1]['psnr']):.2f} dB, `{incumbent}` {float(theirs[-1]['psnr']):.2f}"
        f"{group_words(ours[-1], theirs[-1])}"
        if ours and theirs
        else "Not yet scored beside it on the validation set"
    )
    return (
        f"## What changed\n"
        f"Replaces `{incumbent}`, which was {WHAT_IT_WAS[incumbent]}; this one is\n"
        f"{WHAT_IT_IS[name]}. {scores}.\n"
        f"The older weights still ship and load: `--model {incumbent}`, or the file with\n"
        f"`--model path/to/{incumbent}.safetensors`.\n"
    )


def validation_rows(config: str, hashes: tuple[str, str], incumbent: str) -> tuple[list[dict], list[dict]]:
    """The full-set validation rows of these weights and of the shipped ``incumbent`` under ``config``, each found
    by its weights' hashes (a row keeps the name its weights were first scored under)."""
    rows = [r for r in full_set_rows(read_csv(VALIDATION)) if r["config"] == config]
    path = PRETRAINED / f"{incumbent}.safetensors"
    theirs = hashes_of(path) if path.is_file() else None
    return ([r for r in rows if measured_on(r, *hashes)],
            [r for r in rows if theirs and measured_on(r, *theirs)])  # fmt: skip


def hashes_of(path: Path) -> tuple[str, str]:
    return sha256_file(path), tensors_sha256(read_weights_file(path)[2])


def replacement_decision(name: str, sha256: str, tensors: str) -> None:
    """A model that takes a shipped model's name (the second Rain100L run) ships only if it beats those weights on
    the validation set of its config, and only once they ship on under a name of their own."""
    config, incumbent = REPLACES[name]
    if not (PRETRAINED / f"{incumbent}.safetensors").is_file():
        run = next((run for run, shipped in SHIPS_AS.items() if shipped == incumbent), "RUN")
        raise SystemExit(f"ship the weights it replaces as {incumbent} first: python tools/ship_weights.py {run} "
                         f"--source src/sian/pretrained/{name}.safetensors")  # fmt: skip
    ours, theirs = validation_rows(config, (sha256, tensors), incumbent)
    if not (ours and theirs):
        raise SystemExit(f"score both on its validation set first: python benchmarks/validate_models.py --config "
                         f"{config} --model FILE")  # fmt: skip
    mine, other = float(ours[-1]["psnr"]), float(theirs[-1]["psnr"])
    if mine <= other:
        raise SystemExit(f"its shipping rule says it does not ship: {mine:.3f} dB on the validation set of {config}, "
                         f"not above {incumbent}'s {other:.3f}")  # fmt: skip


def raintrainh_decision(name: str, sha256: str, tensors: str) -> str:
    """The Rain100H-style run's shipping rule applied to the committed tables: its three comparisons with
    sian-streaks-heavy, and the name they give. Refuses to ship under a name the rule does not give."""
    incumbent, config = "sian-streaks-heavy", "configs/sian-raintrainh.yaml"
    rows = [r for r in full_set_rows(read_csv(VALIDATION)) if r["config"] == config]
    ours = [json.loads(r["psnr_groups"]) for r in rows if measured_on(r, sha256, tensors)]
    theirs = [json.loads(r["psnr_groups"]) for r in rows if r["model"] == incumbent]
    heavy = read_csv(HEAVY_TEST)
    ours_heavy = [float(r["psnr"]) for r in heavy if measured_on(r, sha256, tensors)]
    theirs_heavy = [float(r["psnr"]) for r in heavy if run_name(r["model"]) == incumbent]
    if not (ours and theirs and ours_heavy and theirs_heavy):
        raise SystemExit("score it first: python benchmarks/validate_models.py --config configs/sian-raintrainh.yaml "
                         "--model FILE and python benchmarks/heavy_rain_test.py --model FILE")  # fmt: skip
    mine, other = ours[-1], theirs[-1]
    beats = mine["RainTrainH_12"] > other["RainTrainH_12"]
    keeps_light = mine["Rain100L_train"] >= 30.0
    matches_heavy = ours_heavy[-1] >= theirs_heavy[-1]
    if not (beats and keeps_light):
        raise SystemExit("its shipping rule says it does not ship (see configs/sian-raintrainh.yaml)")
    ruled = "sian-heavy" if matches_heavy else "sian-rain100h-style"
    if name != ruled:
        raise SystemExit(f"its shipping rule names it {ruled}, not {name}")
    outcome = (f"so it ships as `{name}` and replaces `{incumbent}` for heavy rain" if matches_heavy else
               f"so it ships beside `{incumbent}` as `{name}`: use `{incumbent}` for dense streak rain, this one for "
               "rain like Rain100H's")  # fmt: skip
    return (
        f"## Shipping decision\n"
        f"The shipping rule above, applied to {SOURCE}'s committed validation and heavy-rain tables:\n"
        f"- the 3 held-out RainTrainH pairs: {mine['RainTrainH_12']:.2f} dB against `{incumbent}`'s "
        f"{other['RainTrainH_12']:.2f} (beats it: {'yes' if beats else 'no'});\n"
        f"- the 20 held-out Rain100L pairs: {mine['Rain100L_train']:.2f} dB (at least 30: "
        f"{'yes' if keeps_light else 'no'});\n"
        f"- held-out streak-bank heavy rain: {ours_heavy[-1]:.2f} dB against `{incumbent}`'s {theirs_heavy[-1]:.2f} "
        f"(matches it: {'yes' if matches_heavy else 'no'}), {outcome}.\n"
    )


def validation_words(config: str) -> str:
    if config.endswith("sian-raintrainh.yaml"):
        return ("the 3 held-out RainTrainH pairs, their rain over held-out photos, and the 20 held-out Rain100L "
                "pairs")  # fmt: skip
    if config.endswith("rain100l-cpu-2.yaml"):
        return "the 20 held-out Rain100L training pairs"
    return "held-out Rain100L pairs and held-out photos with held-out streak sets"


def group_words(ours: dict, theirs: dict) -> str:
    """Each validation group's score of both, where the rows recorded them (validate_models.py's psnr_groups)."""
    mine, other = (json.loads(row.get("psnr_groups") or "{}") for row in (ours, theirs))
    if not (mine and other):  # one group, or rows made before groups were recorded
        return ""
    return "; by group: " + ", ".join(f"{group} {mine[group]:.2f} against {other[group]:.2f}"
                                       for group in mine if group in other)  # fmt: skip


def select_on_classic(preset: str, tmp: Path) -> tuple[Path, str]:
    """The committed checkpoint of the run with the best held-out classic-rain PSNR, written under ``tmp``."""
    from cross_renderer_val import CSV, candidates

    with open(CSV) as f:
        rows = [r for r in csv.DictReader(f) if r["run"] == f"sian-synth-{preset}"]
    if not rows:
        raise SystemExit(f"no sian-synth-{preset} rows in {CSV}: run python benchmarks/cross_renderer_val.py first")
    best = max(rows, key=lambda r: float(r["classic_psnr"]))
    blobs = {hashlib.sha256(blob).hexdigest(): blob for _, blob in candidates(preset)}
    path = tmp / "selected.safetensors"
    path.write_bytes(blobs[best["sha256"]])
    return path, (
        f"best held-out classic-rain PSNR among {len(rows)} committed checkpoints, "
        f"{float(best['classic_psnr']):.2f} dB from {float(best['classic_input_psnr']):.2f}"
    )


def preset_table() -> str:
    doc = rain_module.__doc__
    start, end = doc.index("=========="), doc.rindex("==========")
    return doc[start : doc.index("\n", end)].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=list(RUN_NAMES), help="which run: " + ", ".join(RUN_NAMES))
    parser.add_argument("--name", choices=RAINTRAINH_NAMES, help="the name raintrainh ships as (its rule picks)")
    parser.add_argument("--source", type=Path, help="default: checkpoints/<name>/best.safetensors")
    parser.add_argument("--select", choices=["val", "classic"], default="val",
                        help="val: the run's best on its own held-out validation set (best.safetensors); classic "
                             "(synthetic runs): the committed checkpoint best on held-out classic rain "
                             "(docs/results/cross-renderer-val.csv)")  # fmt: skip
    args = parser.parse_args()
    if (args.preset == "raintrainh") != (args.name is not None):
        raise SystemExit("--name is for raintrainh, and raintrainh needs it: " + " or ".join(RAINTRAINH_NAMES))
    name, run = args.name or shipped_name(args.preset), REPO / "checkpoints" / RUN_NAMES[args.preset]
    with tempfile.TemporaryDirectory() as tmp:
        source, selection = args.source or run / "best.safetensors", "best held-out validation PSNR of the run"
        if args.select == "classic":
            source, selection = select_on_classic(args.preset, Path(tmp))
        arch, config, state, metadata = read_weights_file(source)
    step = int(metadata["step"])
    records = read_records(run / "log.jsonl")
    record = training_record(records, step)
    train_config = load_config(run / "config.yaml")

    # The rule's verdict first: a name it does not give writes nothing.
    decision = ""
    if args.preset == "raintrainh":
        decision = raintrainh_decision(name, sha256_file(source), tensors_sha256(state))
    elif name in REPLACES and (PRETRAINED / f"{name}.safetensors").is_file():
        # The name still holds the weights this model replaces, kept under their own name or not yet: only the
        # replacement rule lets it take the name.
        current = hashes_of(PRETRAINED / f"{name}.safetensors")[1]
        incumbent = PRETRAINED / f"{REPLACES[name][1]}.safetensors"
        if current != tensors_sha256(state) and (not incumbent.is_file() or hashes_of(incumbent)[1] == current):
            replacement_decision(name, sha256_file(source), tensors_sha256(state))
    target = PRETRAINED / f"{name}.safetensors"
    if not same_weights(target, state, step):  # safetensors orders metadata arbitrarily: rewrite only on change
        save_weights(target, state, arch, config, name=name, variant=train_config.model.variant, preset=args.preset,
                     step=str(step), val_psnr=f"{record['val_psnr']:.4f}",
                     cpu_hours=f"{record['cpu_seconds'] / 3600:.2f}",
                     licence="MIT (trained by the sian project)")  # fmt: skip
    digest, tensors = sha256_file(target), tensors_sha256(state)
    found = rain100l_row(name, digest, tensors)
    row = found[0] if found else None
    reference = f"{float(row['psnr']):.2f} / {float(row['ssim']):.3f}" if row else "not measured"
    dataset = {"rain100l": "Rain100L train (ours, 180 pairs)", "rain100l-2": "Rain100L train (ours, 180 pairs)",
               "general": "Rain100L train pairs + streak-bank rain (BSDS500*, Kodak24, McMaster18)",
               "streaks-heavy": "streak-bank heavy rain (BSDS500*, Kodak24, McMaster18) + Rain100L train pairs",
               "raintrainh": "RainTrainH rain layers + streak-bank heavy rain (BSDS500*, Kodak24, McMaster18) + "
                             "RainTrainH and Rain100L train pairs",
               }.get(args.preset, f"synthetic {args.preset} rain (BSDS500*, Kodak24, McMaster18)")  # fmt: skip

    manifest_path = PRETRAINED / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[name] = {
        "variant": train_config.model.variant, "sha256": digest, "preset": args.preset, "step": step,
        "dataset": dataset, "reference": reference,
    }  # fmt: skip
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")

    results = (
        f"Rain100L test ({row['images']} real pairs, Y channel, never seen in training or selection): "
        f"**{float(row['psnr']):.2f} dB / {float(row['ssim']):.4f}** "
        f"(rainy input {float(row['input_psnr']):.2f} / {float(row['input_ssim']):.4f}), "
        f"measured with {SOURCE}'s results benchmark on {row['date']} ({row['machine']})."
        if row
        else "Rain100L test: not measured for this file yet."
    )
    if args.preset in ("streaks-heavy", "raintrainh"):
        results += "\n- " + heavy_test_line(digest, tensors)
    card = {"rain100l": rain100l_card, "rain100l-2": rain100l_card, "raintrainh": raintrainh_card}.get(
        args.preset, mixture_card if args.preset in MIXTURES else synth_card
    )
    text = card(name, args.preset, state, records, record, train_config, step, selection, results)
    if decision:
        text += "\n" + decision
    if name in REPLACES:
        text += "\n" + what_changed(name, digest, tensors)
    (PRETRAINED / f"{name}.md").write_text(text)
    print(f"shipped {source} (step {step}) as {target} sha256 {digest[:16]}...; Rain100L: {reference}")


def training_section(name, preset, records, record, train_config, step, selection) -> str:
    """The card's training facts, common to every run: loss, optimiser, patches, budget, precision."""
    data, optim, train = train_config.data, train_config.optim, train_config.train
    last = last_timed(records)
    precisions = sorted({r["precision"] for r in records if "precision" in r}) or ["fp32"]
    machines = sorted({r["machine"] for r in records if "machine" in r}) or ["x86-64 CPUs"]
    # CPU-equivalent hours (steps on a lent GPU at the run's CPU rate; sian.training.stopping).
    curve, _ = validation_curve(records)
    hours = {r["step"]: r["hours"] for r in curve}
    machine_hours, cpu_hours = curve[-1]["hours"] if curve else last["wall_seconds"] / 3600, last["cpu_seconds"] / 3600
    return f"""## Training
- Loss: negative SSIM summed over the 6 stages (the paper's). Adam lr {optim.lr:g}, betas {list(optim.betas)},
  {optim.schedule} schedule over {train.steps} steps with {optim.warmup_steps} warm-up steps,
  gradient clip {optim.grad_clip:g}; precision {", ".join(precisions)}.
- Patches {data.patch_size}x{data.patch_size}, batch {train.batch_size}, horizontal flips; seed {train.seed}.
- Selected checkpoint: step {step} of {train.steps} ({selection}).
- The run went on to step {last["step"]} ({machine_hours:.2f} machine-hours, {cpu_hours:.2f} CPU-hours); its log
  holds every validation.
- Budget to this checkpoint: {hours.get(step, record["wall_seconds"] / 3600):.2f} machine-hours (wall clock with a
  2-core machine given to training, steps on a lent GPU counted at the run's CPU rate;
  {record["wall_seconds"] / 3600:.2f} wall-clock) = {record["cpu_seconds"] / 3600:.2f} CPU-hours of the training
  processes. Machines: {"; ".join(machines)}.
- Config `{Path(config_path(preset)).name}`, training log and the command that resumes the run: in {SOURCE}."""


def synth_card(name, preset, state, records, record, train_config, step, selection, results) -> str:
    data = train_config.data
    return f"""# {name}

SIAN (the paper's release configuration, {sum(t.numel() for t in state.values()):,} parameters)
{init_provenance(records, train_config.model.init)} by the sian project
on clean photos with **synthetic {preset} rain** from `sian.synth`. Licence: MIT, like the code.
Shipped inside the package: {how_to_use(name, "downpours" if preset == "heavy" else "light rain")}.

## Data
- Clean images: BSDS500 (all splits) without the 72 images that are Rain100L/H test backgrounds
  (`OVERLAP_with_Rain100LH_test_backgrounds.tsv`), Kodak24 and McMaster18: {data.val_holdout} of them held out
  (a fixed draw, `data.val_holdout`) with fixed synthetic rain as the validation set; the rest for training.
- No real rainy image and no Rain100L image (train or test) was used for training, tuning or checkpoint selection.

## Synthetic rain (`{preset}` preset, rendered on the fly for every patch, one seed per sample)
```
{preset_table()}
```

{training_section(name, preset, records, record, train_config, step, selection)}

## Results
- Held-out synthetic validation ({data.val_holdout} images, {data.val_crop}x{data.val_crop} centre crops):
  {record["val_psnr"]:.2f} dB / {record["val_ssim"]:.4f} (rainy input {record["val_input_psnr"]:.2f} dB).
- {results} Full table: the synthetic-rain results page of the documentation.

## Limits
- Trained on synthetic streaks only: real rain with fog, drops on the lens, splashes or night-time lighting is
  outside what it has seen; the documentation's synthetic-rain results page shows real webcam frames.
- The authors' weights (trained on Rain100L's own training pairs) score higher on Rain100L; ours never saw that
  distribution.{HEAVY_LIMIT.format(default=DEFAULT_MODEL) if preset == "heavy" else ""}
"""


def rain100l_card(name, preset, state, records, record, train_config, step, selection, results) -> str:
    held_out = len(read_pair_names(REPO / train_config.data.val_split))
    stop = train_config.train.stop
    ended = read_verdict(REPO / "checkpoints" / RUN_NAMES[preset]) or "still training when shipped (no verdict yet)"
    how, history = f"{init_provenance(records, train_config.model.init)} by the sian project", ""
    if preset == "rain100l-2":
        how, history = "trained in two runs by the sian project", continuation_words(records, train_config)
    successor = next((model for model, (_, incumbent) in REPLACES.items() if incumbent == name), None)
    if successor:  # the first run's weights, kept under a versioned name
        history = (f"These weights shipped as `{successor}` until a second run, trained on from this one's last "
                   f"state,\ntook that name by scoring higher on the same held-out pairs.")  # fmt: skip
    return f"""# {name}

SIAN (the paper's release configuration, {sum(t.numel() for t in state.values()):,} parameters)
{how} on the **real Rain100L training set**
with the paper's loss: our own reproduction of the paper's recipe on a CPU budget, not the authors'
weights. Licence: MIT, like the code. `sian derain --model {name}`.
{chr(10) + history + chr(10) if history else ""}
## Data
- `Rain100L_train` (200 synthetic-rain pairs of the benchmark's training split): {200 - held_out} for training,
  {held_out} held out for validation and checkpoint selection (a fixed draw committed before training).
- Nothing else: no synthetic rain of ours, no pre-training, and no Rain100L *test* image in training, tuning or
  selection.

{training_section(name, preset, records, record, train_config, step, selection)}
- Selection rule, fixed in the config before training: the best validation Y-PSNR on the {held_out} held-out
  pairs (whole images); stop after at least {stop.min_hours:g} machine-hours once the best has gained less than
  {stop.min_gain:g} dB over the last {stop.window_hours:g} machine-hours, or at {stop.max_hours:g} (`train.stop`,
  judged by the trainer after every validation; the training log records each verdict).
  How the run ended: {ended}.

## Results
- Held-out validation ({held_out} Rain100L training pairs, whole images): {record["val_psnr"]:.2f} dB /
  {record["val_ssim"]:.4f} (rainy input {record["val_input_psnr"]:.2f} dB).
- {results} Full table, validation curve and per-stage PSNR: the Rain100L results page of the documentation.

## Limits
- Rain100L's rain is light, synthetic and near-vertical: dense rain, haze, drops on the lens and night scenes
  are outside what it has seen (the synthetic-rain models and the general model `sian-general` aim at those).
- A CPU budget, not the paper's 100 epochs: the validation curve on the documentation's Rain100L results page
  shows what more would give.
"""


def continuation_words(records: list[dict], train_config) -> str:
    """The second Rain100L run's provenance: the first run, from scratch, then this one from its last state, and
    the budget of both from scratch in machine-hours (as the results page counts them)."""
    first_run = REPO / "checkpoints" / RUN_NAMES["rain100l"]
    first = read_records(first_run / "log.jsonl")
    first_curve, _ = validation_curve(first)
    curve, _ = validation_curve(records)
    first_hours, own_hours = first_curve[-1]["hours"], curve[-1]["hours"]
    optim = train_config.optim
    return textwrap.fill(
        f"Two runs, {first_hours + own_hours:.2f} machine-hours from scratch: the first "
        f"(`{Path(CONFIGS['rain100l']).name}`, {first_hours:.2f} machine-hours) from scratch, ended by its rule at "
        f"step {last_timed(first)['step']}, its pick shipping on as `{shipped_name('rain100l')}`; this one "
        f"({own_hours:.2f} machine-hours) from the first's last state (weights and Adam moments), with a new "
        f"{optim.schedule} schedule at a peak learning rate of {optim.lr:g}.",
        width=115,
        break_on_hyphens=False,
    )


def mixture_card(name, preset, state, records, record, train_config, step, selection, results) -> str:
    """The fine-tuned models: on real Rain100L pairs mixed with streak-bank rain over clean photos."""
    data = train_config.data
    held_out = len(read_pair_names(REPO / data.val_split))
    groups = ", ".join(f"{key[9:]} {value:.2f} dB" for key, value in record.items() if key.startswith("val_psnr_"))
    use = {"general": "photos with rain of any weight", "streaks-heavy": "downpours (dense streaks)"}[preset]
    use = how_to_use(name, use)
    return f"""# {name}

SIAN (the paper's release configuration, {sum(t.numel() for t in state.values()):,} parameters)
{init_provenance(records, train_config.model.init)} by the sian project on a mixture of **real Rain100L
training pairs** and **real streak layers** (Garg & Nayar's streak bank) composited over clean photos.
Licence: MIT, like the code. {use}.

## Data
- {data.pair_fraction:.0%} of the samples: `Rain100L_train` pairs ({200 - held_out} for training;
  {held_out}, a fixed draw committed before training, held out).
- The rest: `{data.synth_preset}` streak-bank rain (`sian.synth.streaks`: layers cropped, scaled, rotated,
  thinned and screen-blended at the photo's full size; the streak sets of `streaks_val_sets.txt` never used)
  over clean photos: BSDS500 without the Rain100L/H test backgrounds and the backgrounds of the held-out pairs,
  Kodak24, McMaster18; {data.val_holdout} of them held out.
- No Rain100L *test* image in training, tuning or selection.

{training_section(name, preset, records, record, train_config, step, selection)}
- Selection rule, fixed in the config before training: the best mean Y-PSNR over the {held_out} held-out pairs
  and the {data.val_holdout} held-out photos with held-out streak sets (whole images).

## Results
- Validation, whole images: {record["val_psnr"]:.2f} dB / {record["val_ssim"]:.4f} mean ({groups}; rainy
  input {record["val_input_psnr"]:.2f} dB).
- {results}

## Limits
- Streak rain only: no haze, drops on the lens, splashes or night-time glare were rendered.
- Rotations stay within 12 degrees of vertical; strongly wind-driven rain was not rendered.
"""


def raintrainh_card(name, preset, state, records, record, train_config, step, selection, results) -> str:
    """The Rain100H-style model: fine-tuned on the rain of the real RainTrainH pairs."""
    data = train_config.data
    groups = ", ".join(f"{key[9:]} {value:.2f} dB" for key, value in record.items()
                       if key.startswith("val_psnr_") and key != "val_psnr_all")  # fmt: skip
    use = how_to_use(name, "heavy rain like Rain100H's (dense, bright streaks)")
    return f"""# {name}

SIAN (the paper's release configuration, {sum(t.numel() for t in state.values()):,} parameters)
{init_provenance(records, train_config.model.init)} by the sian project on **the rain of Rain100H's own
training pairs**: the rain layers of 9 of the 12 RainTrainH pairs we have (rainy minus clean), composited over
clean photos, mixed with the pairs themselves, real Rain100L pairs and streak-bank heavy rain.
Licence: MIT, like the code. {use}.

## Data
- {data.pair_fraction:.0%} of the samples real pairs: half the 9 held-in RainTrainH pairs, half the 180
  `Rain100L_train` pairs (keeps light rain). 3 RainTrainH pairs (a draw committed before training) and 20
  Rain100L pairs are held out, the held-out pairs' backgrounds never trained on.
- The rest: clean photos (BSDS500 without the Rain100L/H test backgrounds and the held-out pairs'
  backgrounds, Kodak24, McMaster18; {data.val_holdout} held out) with `{data.synth_preset}` rain: the held-in
  pairs' rain layers (cropped, scaled, flipped, intensity-scaled, sometimes two stacked; saturated pixels kept
  saturated) and streak-bank heavy rain.
- No Rain100H or Rain100L *test* image in training, tuning or selection. The authors' Rain100H weights were
  trained on all 1800 RainTrainH pairs, these 12 among them.

{training_section(name, preset, records, record, train_config, step, selection)}
- Selection rule, fixed in the config before training: the best mean Y-PSNR over the 3 held-out RainTrainH
  pairs and their rain layers over the {data.val_holdout} held-out photos (whole images).
- Shipping rule, fixed in the config before training: it ships if it beats `sian-streaks-heavy` on the 3
  held-out RainTrainH pairs and scores at least 30 dB on the 20 held-out Rain100L pairs; as `sian-heavy`,
  replacing `sian-streaks-heavy` as the model for heavy rain, if it also matches that model on held-out
  streak-bank heavy rain, else as `sian-rain100h-style`.

## Results
- Validation, whole images: {record["val_psnr"]:.2f} dB / {record["val_ssim"]:.4f} mean ({groups}; rainy
  input {record["val_input_psnr"]:.2f} dB).
- {results}

## Limits
- Its Rain100H-style rain comes from 9 training pairs: 1.4 megapixels of real rain layers, augmented.
- Streaks only: no haze, drops on the lens, splashes or night-time glare.
"""


if __name__ == "__main__":
    main()
