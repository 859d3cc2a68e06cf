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


def _steps_by_machine(records: list[dict]) -> list[tuple[int, int, float, str]]:
    """(record index, steps, wall seconds, machine) since the previous timed record, for every timed record."""
    machine, previous_step, previous_wall = "a CPU (before the log named machines)", 0, 0.0
    deltas = []
    for index, record in enumerate(records):
        if "precision" in record:  # a start or a resume: the machine from here on
            machine = record.get("machine", machine)
        elif "wall_seconds" in record:
            deltas.append((index, record["step"] - previous_step, record["wall_seconds"] - previous_wall, machine))
            previous_step, previous_wall = record["step"], record["wall_seconds"]
    return deltas


def _is_gpu(machine: str) -> bool:
    return "NVIDIA" in machine or "cuda" in machine


def read_records(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def throughput(records: list[dict]) -> dict[str, tuple[int, float]]:
    """Steps and wall-clock hours per machine (validation and checkpoints included: what a run gets)."""
    table: dict[str, tuple[int, float]] = {}
    for _, steps, seconds, machine in _steps_by_machine(records):
        done, hours = table.get(machine, (0, 0.0))
        table[machine] = (done + steps, hours + seconds / 3600)
    return table


def read_curve(path: str) -> tuple[list[dict], float]:
    """Validation records, each with ``hours`` (CPU-equivalent) and ``wall_hours``; and the CPU steps/hour."""
    records = read_records(path)
    deltas = _steps_by_machine(records)
    cpu_steps = sum(steps for _, steps, _, machine in deltas if not _is_gpu(machine))
    cpu_seconds = sum(seconds for _, _, seconds, machine in deltas if not _is_gpu(machine))
    cpu_rate = cpu_steps / (cpu_seconds / 3600) if cpu_seconds > 0 else float("nan")
    # Second pass: accumulate CPU-equivalent hours.
    hours, curve = 0.0, []
    for index, steps, seconds, machine in deltas:
        hours += steps / cpu_rate if _is_gpu(machine) else seconds / 3600
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
        # A mixture's validation (issue 15) also logs each source's own mean: val_psnr_pairs, val_psnr_synthetic.
        groups = "".join(f", {key[9:]} {value:.3f}" for key, value in record.items() if key.startswith("val_psnr_"))
        print(f"step {record['step']:6d}  {record['hours']:6.2f} h ({record['wall_hours']:5.2f} wall)  validation "
              f"Y-PSNR {record['val_psnr']:.3f} dB (rainy input {record['val_input_psnr']:.3f}{groups}), "
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
    print("throughput per machine (wall clock, validation and checkpoints included):")
    for machine, (steps, hours) in throughput(read_records(args.log)).items():
        print(f"  {machine}: {steps} steps in {hours:.2f} h = {steps / (hours * 3600):.3f} steps/s")
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
