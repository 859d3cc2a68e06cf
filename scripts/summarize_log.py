"""The validation curve of a training run, against machine-hours, and issue 14's stopping rule.

    python scripts/summarize_log.py RUN/log.jsonl [--min-hours 12] [--window 3] [--min-gain 0.05] [--max-hours 30]

Prints every validation record (step, wall-clock machine-hours from the trainer's own ``wall_seconds``,
CPU-equivalent hours, validation Y-PSNR/SSIM and the rainy input's), then the rule fixed before the run
(issue 14): judge only after ``--min-hours``; stop when the best validation PSNR has gained less than
``--min-gain`` dB over the last ``--window`` hours, or at ``--max-hours``. The checkpoint to ship is the
run's ``best.safetensors``: the best validation PSNR on the held-out training pairs, never a test score.

Hours are CPU-equivalent ("12 machine-hours, or the GPU equivalent", issue 14): time on the run's CPUs
counts as it was spent, and steps taken on a GPU count as the hours the run's own CPU segments needed per
step (each resume record names its machine). A run that never left the CPU gets its wall-clock hours.
"""

import argparse
import json


def read_curve(path: str) -> tuple[list[dict], float]:
    """Validation records, each with ``hours`` (CPU-equivalent) and ``wall_hours``; and the CPU steps/hour."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    # First pass: the run's CPU rate, from the progress records logged on a CPU.
    on_gpu, cpu_steps, cpu_seconds = False, 0, 0.0
    previous_step, previous_wall = 0, 0.0
    deltas = []  # (record index, steps, seconds, on_gpu)
    for index, record in enumerate(records):
        if "precision" in record:  # a start or a resume: the machine from here on
            on_gpu = "NVIDIA" in record.get("machine", "") or "cuda" in record.get("machine", "")
            continue
        if "wall_seconds" not in record:
            continue
        steps, seconds = record["step"] - previous_step, record["wall_seconds"] - previous_wall
        previous_step, previous_wall = record["step"], record["wall_seconds"]
        deltas.append((index, steps, seconds, on_gpu))
        if not on_gpu:
            cpu_steps, cpu_seconds = cpu_steps + steps, cpu_seconds + seconds
    cpu_rate = cpu_steps / (cpu_seconds / 3600) if cpu_seconds > 0 else float("nan")
    # Second pass: accumulate CPU-equivalent hours.
    hours, curve = 0.0, []
    for index, steps, seconds, gpu in deltas:
        hours += steps / cpu_rate if gpu else seconds / 3600
        record = records[index]
        if "val_psnr" in record:
            curve.append({**record, "hours": hours, "wall_hours": record["wall_seconds"] / 3600})
    return curve, cpu_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log")
    parser.add_argument("--min-hours", type=float, default=12.0)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--min-gain", type=float, default=0.05)
    parser.add_argument("--max-hours", type=float, default=30.0)
    args = parser.parse_args()
    curve, cpu_rate = read_curve(args.log)
    for record in curve:
        print(f"step {record['step']:6d}  {record['hours']:6.2f} h ({record['wall_hours']:5.2f} wall)  validation "
              f"Y-PSNR {record['val_psnr']:.3f} dB (rainy input {record['val_input_psnr']:.3f}), "
              f"SSIM {record['val_ssim']:.4f}")  # fmt: skip
    if not curve:
        print("no validation yet")
        return
    now = curve[-1]["hours"]
    best_now = max(record["val_psnr"] for record in curve)
    earlier = [record["val_psnr"] for record in curve if record["hours"] <= now - args.window]
    gain = best_now - max(earlier) if earlier else float("inf")
    wall = curve[-1]["wall_hours"]
    print(f"\n{now:.2f} CPU-equivalent hours ({wall:.2f} wall-clock; CPU rate {cpu_rate:.0f} steps/h); "
          f"best validation {best_now:.3f} dB; gain over the last {args.window:g} h: {gain:.3f} dB")  # fmt: skip
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
