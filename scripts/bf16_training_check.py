"""The quality cost of bf16 training (issue 14): two short runs of the Rain100L recipe from the same seed,
one in fp32 and one in bf16, compared on held-out validation PSNR after the same number of steps.

    python scripts/bf16_training_check.py [--steps 1500] [--val-every 500] [--out build/bf16-check]

Both runs use ``configs/rain100l-cpu.yaml`` (its validation split, never the test set) with the schedule
shortened to ``--steps``; each is an ordinary resumable ``sian train`` run in ``OUT/fp32`` and ``OUT/bf16``,
so an interrupted check continues where it stopped. A third run, fp32 from ``--reference-seed`` (another
initialisation and batch order, ``OUT/fp32-seedN``), measures how far two fp32 runs land apart anyway: the
yardstick for bf16's difference, which one pair of runs cannot tell from chance (``--reference-seed -1``
skips it). The summary (validation PSNR of the runs at every validation step, the differences, and the step
rates from the trainer's own log) is printed and written to ``OUT/summary.json``, with the CPU and its bf16
features.

Run it on a CPU with AMX or AVX512-BF16 (or a GPU): elsewhere bf16 is emulated and 10-40x slower than
fp32, which makes the check take days (``sian bench`` shows what a machine has).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from sian.precision import cpu_features, resolve_precision
from sian.training import load_config, train

REPO = Path(__file__).resolve().parents[1]


def read_log(run: Path) -> tuple[dict[int, float], list[float]]:
    validations, rates = {}, []
    for line in (run / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "val_psnr" in record:
            validations[record["step"]] = record["val_psnr"]
        if "pixels_per_second" in record:
            rates.append(record["pixels_per_second"])
    return validations, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bf16-check")
    parser.add_argument("--reference-seed", type=int, default=1, help="seed of the fp32 yardstick run (-1: none)")
    args = parser.parse_args()
    import torch

    choice = resolve_precision("auto", torch.device("cpu"))
    print(f"CPU features {cpu_features()}; auto would pick {choice.precision} ({choice.reason})")
    runs = {"fp32": ("fp32", 0), "bf16": ("bf16", 0)}
    if args.reference_seed >= 0:
        runs[f"fp32-seed{args.reference_seed}"] = ("fp32", args.reference_seed)
    logs = {}
    for name, (precision, seed) in runs.items():
        overrides = [f"train.steps={args.steps}", f"train.val_every={args.val_every}", f"train.precision={precision}",
                     f"train.seed={seed}", f"train.out_dir={args.out / name}", "optim.warmup_steps=50"]  # fmt: skip
        config = load_config(REPO / "configs" / "rain100l-cpu.yaml", overrides)
        summary = train(config, resume=True)
        if summary["status"] != "finished":
            raise SystemExit(f"{name} run {summary['status']} at step {summary['step']}: run again to resume")
        logs[name] = read_log(args.out / name)
    (fp32_val, fp32_rate), bf16_rate = logs["fp32"], logs["bf16"][1]
    steps = sorted(set.intersection(*(set(val) for val, _ in logs.values())))
    result = {
        "cpu_features": cpu_features(),
        "steps": args.steps,
        "val_psnr": {
            str(s): {name: val[s] for name, (val, _) in logs.items()}
            | {f"{name}_minus_fp32": val[s] - fp32_val[s] for name, (val, _) in logs.items() if name != "fp32"}
            for s in steps
        },
        "step_rate_bf16_over_fp32": statistics.median(bf16_rate) / statistics.median(fp32_rate),
    }
    (args.out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    for s in steps:
        gaps = ", ".join(f"{name} {val[s]:.3f} ({val[s] - fp32_val[s]:+.3f} dB)" for name, (val, _) in logs.items()
                         if name != "fp32")  # fmt: skip
        print(f"step {s}: val PSNR fp32 {fp32_val[s]:.3f}, {gaps}")
    print(f"bf16 step rate: {result['step_rate_bf16_over_fp32']:.2f}x fp32's")


if __name__ == "__main__":
    main()
