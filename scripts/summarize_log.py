"""The validation curve of a training run, against machine-hours, and issue 14's stopping rule.

    python scripts/summarize_log.py RUN/log.jsonl [--min-hours 12] [--window 3] [--min-gain 0.05] [--max-hours 30]

Prints every validation record (step, wall-clock machine-hours from the trainer's own ``wall_seconds``,
validation Y-PSNR/SSIM and the rainy input's), then the rule fixed before the run (issue 14): judge only
after ``--min-hours``; stop when the best validation PSNR has gained less than ``--min-gain`` dB over the
last ``--window`` machine-hours, or at ``--max-hours``. The checkpoint to ship is the run's
``best.safetensors``: the best validation PSNR on the held-out training pairs, never a test score.
"""

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log")
    parser.add_argument("--min-hours", type=float, default=12.0)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--min-gain", type=float, default=0.05)
    parser.add_argument("--max-hours", type=float, default=30.0)
    args = parser.parse_args()
    curve = []
    with open(args.log) as f:
        for line in f:
            record = json.loads(line)
            if "val_psnr" in record:
                hours = record.get("wall_seconds", 0.0) / 3600
                curve.append((hours, record["val_psnr"]))
                print(f"step {record['step']:6d}  {hours:6.2f} h  validation Y-PSNR {record['val_psnr']:.3f} dB "
                      f"(rainy input {record['val_input_psnr']:.3f}), SSIM {record['val_ssim']:.4f}")  # fmt: skip
    if not curve:
        print("no validation yet")
        return
    now = curve[-1][0]
    best_now = max(psnr for _, psnr in curve)
    earlier = [psnr for hours, psnr in curve if hours <= now - args.window]
    gain = best_now - max(earlier) if earlier else float("inf")
    print(f"\n{now:.2f} machine-hours; best validation {best_now:.3f} dB; gain over the last {args.window:g} h: "
          f"{gain:.3f} dB")  # fmt: skip
    if now >= args.max_hours:
        print(f"stop: {args.max_hours:g} machine-hours reached")
    elif now < args.min_hours:
        print(f"keep training: judged only after {args.min_hours:g} machine-hours")
    elif gain < args.min_gain:
        print(f"stop: less than {args.min_gain} dB gained over the last {args.window:g} machine-hours")
    else:
        print("keep training: still gaining")


if __name__ == "__main__":
    main()
