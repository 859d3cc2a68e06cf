"""The validation curve of a training run, against machine-hours, and its stopping rule's verdict.

    python scripts/summarize_log.py RUN/log.jsonl [--min-hours H] [--window H] [--min-gain DB] [--max-hours H]

Prints every validation record (step, CPU-equivalent hours and wall-clock hours from the trainer's own
``wall_seconds``, validation Y-PSNR/SSIM and the rainy input's), the throughput per machine, then the verdict
of the run's stopping rule: ``train.stop`` of ``RUN/config.yaml`` (the rule the trainer itself applies after
every validation; issue 14's run: judged after 12 machine-hours, stop when the best gained less than 0.05 dB
over the last 3, or at 30), or the flags given. Hours and the rule: :mod:`sian.training.stopping`. The
checkpoint to ship is the run's ``best.safetensors``: the best validation PSNR on held-out data, never a test
score.
"""

import argparse
from pathlib import Path

from sian.training import load_config
from sian.training.config import StopConfig
from sian.training.stopping import read_records, stop_verdict, throughput, validation_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log")
    parser.add_argument("--min-hours", type=float)
    parser.add_argument("--window", type=float)
    parser.add_argument("--min-gain", type=float)
    parser.add_argument("--max-hours", type=float)
    args = parser.parse_args()
    saved = Path(args.log).with_name("config.yaml")
    rule = load_config(saved, []).train.stop if saved.is_file() else StopConfig()  # the default: off
    given = {"min_hours": args.min_hours, "window_hours": args.window, "min_gain": args.min_gain,
             "max_hours": args.max_hours}  # fmt: skip
    settings = {key: value if value is not None else getattr(rule, key) for key, value in given.items()}
    records = read_records(args.log)
    curve, cpu_rate = validation_curve(records)
    for record in curve:
        # A mixture's validation (issue 15) also logs each source's own mean: val_psnr_pairs, val_psnr_synthetic.
        groups = "".join(f", {key[9:]} {value:.3f}" for key, value in record.items() if key.startswith("val_psnr_"))
        print(f"step {record['step']:6d}  {record['hours']:6.2f} h ({record['wall_hours']:5.2f} wall)  validation "
              f"Y-PSNR {record['val_psnr']:.3f} dB (rainy input {record['val_input_psnr']:.3f}{groups}), "
              f"SSIM {record['val_ssim']:.4f}")  # fmt: skip
    if not curve:
        print("no validation yet")
        return
    verdict = stop_verdict(curve, **settings)
    window = settings["window_hours"]
    gain = f"{verdict.gain:.3f} dB" if verdict.gain != float("inf") else f"none yet (no validation {window:g} h back)"
    print(f"\n{verdict.hours:.2f} CPU-equivalent hours ({curve[-1]['wall_hours']:.2f} wall-clock; CPU rate "
          f"{cpu_rate:.0f} steps/h); best validation {verdict.best:.3f} dB; gain over the last {window:g} h: "
          f"{gain}")  # fmt: skip
    print("throughput per machine (wall clock, validation and checkpoints included):")
    for machine, (steps, hours) in throughput(records).items():
        print(f"  {machine}: {steps} steps in {hours:.2f} h = {steps / (hours * 3600):.3f} steps/s")
    if not (settings["min_gain"] or settings["max_hours"]):
        print("no stopping rule: the run's config has no train.stop (give --min-gain / --max-hours)")
    else:
        print(verdict.reason)


if __name__ == "__main__":
    main()
