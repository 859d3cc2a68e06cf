"""The quality cost of bf16 training (issue 14): two short runs of the Rain100L recipe from the same seed,
one in fp32 and one in bf16, compared on held-out validation PSNR after the same number of steps.

    python scripts/bf16_training_check.py [--steps 1500] [--val-every 500] [--out build/bf16-check]

Both runs use ``configs/rain100l-cpu.yaml`` (its validation split, never the test set) with the schedule
shortened to ``--steps``; each is an ordinary resumable ``sian train`` run in ``OUT/fp32`` and ``OUT/bf16``,
so an interrupted check continues where it stopped. The summary (validation PSNR of both at every
validation step, the difference, and the step rates from the trainer's own log) is printed and written to
``OUT/summary.json``, with the CPU and its bf16 features.

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
    args = parser.parse_args()
    import torch

    choice = resolve_precision("auto", torch.device("cpu"))
    print(f"CPU features {cpu_features()}; auto would pick {choice.precision} ({choice.reason})")
    for precision in ("fp32", "bf16"):
        overrides = [f"train.steps={args.steps}", f"train.val_every={args.val_every}", f"train.precision={precision}",
                     f"train.out_dir={args.out / precision}", "optim.warmup_steps=50"]  # fmt: skip
        config = load_config(REPO / "configs" / "rain100l-cpu.yaml", overrides)
        summary = train(config, resume=True)
        if summary["status"] != "finished":
            raise SystemExit(f"{precision} run {summary['status']} at step {summary['step']}: run again to resume")
    (fp32_val, fp32_rate), (bf16_val, bf16_rate) = read_log(args.out / "fp32"), read_log(args.out / "bf16")
    steps = sorted(set(fp32_val) & set(bf16_val))
    result = {
        "cpu_features": cpu_features(),
        "steps": args.steps,
        "val_psnr": {
            str(s): {"fp32": fp32_val[s], "bf16": bf16_val[s], "bf16_minus_fp32": bf16_val[s] - fp32_val[s]}
            for s in steps
        },
        "step_rate_bf16_over_fp32": statistics.median(bf16_rate) / statistics.median(fp32_rate),
    }
    (args.out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    for s in steps:
        gap = bf16_val[s] - fp32_val[s]
        print(f"step {s}: val PSNR fp32 {fp32_val[s]:.3f}, bf16 {bf16_val[s]:.3f} ({gap:+.3f} dB)")
    print(f"bf16 step rate: {result['step_rate_bf16_over_fp32']:.2f}x fp32's")


if __name__ == "__main__":
    main()
