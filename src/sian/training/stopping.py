"""When a run has trained enough: its validation curve in machine-hours, and a stopping rule on it.

A run's ``log.jsonl`` (written by the trainer) holds timed records (``wall_seconds``), validation records
(``val_psnr``) and, at every start or resume, the machine it ran on. Hours here are **CPU-equivalent**
("12 machine-hours, or the GPU equivalent"): time on the run's CPUs counts as it was spent, and
steps taken on a GPU count as the hours the run's own CPU segments needed per step. A run that never left
the CPU gets its wall-clock hours.

The rule (:func:`stop_verdict`, config ``train.stop``): judge only after ``min_hours``; stop when the best
validation PSNR has gained less than ``min_gain`` dB over the last ``window_hours``, or at ``max_hours``.
The trainer applies it after every validation and at a resume; :func:`summarize_run` (``sian train CONFIG
--summary``) prints the curve and the verdict.

Examples:
    >>> curve = [{"hours": h, "val_psnr": p} for h, p in [(1, 30.0), (2, 31.0), (3, 31.01), (4, 31.02)]]
    >>> stop_verdict(curve, min_hours=2, window_hours=2, min_gain=0.05).stop  # 31.02 - 31.0 < 0.05
    True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = [
    "VERDICT_FILE",
    "StopRule",
    "StopVerdict",
    "last_timed",
    "read_records",
    "read_verdict",
    "stop_verdict",
    "summarize_run",
    "throughput",
    "validation_curve",
]  # fmt: skip

UNNAMED_MACHINE = "a CPU (before the log named machines)"
VERDICT_FILE = "STOPPED"  # in a run's out_dir once its rule ended it: the verdict (tools/train.sh reads it too)


def read_records(path: str | os.PathLike) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def last_timed(records: list[dict]) -> dict:
    """The last record with the run's clock (``step``, ``wall_seconds``, ``cpu_seconds``): a run its rule
    stopped ends on a verdict record, which has none."""
    return [record for record in records if "wall_seconds" in record][-1]


def read_verdict(out_dir: str | os.PathLike) -> str | None:
    """The verdict of the rule that ended the run in ``out_dir``, or None while none has."""
    path = Path(out_dir) / VERDICT_FILE
    return path.read_text().strip() if path.is_file() else None


def _steps_by_machine(records: list[dict]) -> list[tuple[int, int, float, str]]:
    """(record index, steps, wall seconds, machine) since the previous timed record, for every timed record."""
    machine, previous_step, previous_wall = UNNAMED_MACHINE, 0, 0.0
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


def throughput(records: list[dict]) -> dict[str, tuple[int, float]]:
    """Steps and wall-clock hours per machine (validation and checkpoints included: what a run gets)."""
    table: dict[str, tuple[int, float]] = {}
    for _, steps, seconds, machine in _steps_by_machine(records):
        done, hours = table.get(machine, (0, 0.0))
        table[machine] = (done + steps, hours + seconds / 3600)
    return table


def validation_curve(records: list[dict]) -> tuple[list[dict], float]:
    """Validation records, each with ``hours`` (CPU-equivalent) and ``wall_hours``; and the CPU steps/hour."""
    deltas = _steps_by_machine(records)
    cpu_steps = sum(steps for _, steps, _, machine in deltas if not _is_gpu(machine))
    cpu_seconds = sum(seconds for _, _, seconds, machine in deltas if not _is_gpu(machine))
    cpu_rate = cpu_steps / (cpu_seconds / 3600) if cpu_seconds > 0 else float("nan")
    hours, curve = 0.0, []
    for index, steps, seconds, machine in deltas:
        hours += steps / cpu_rate if _is_gpu(machine) else seconds / 3600
        record = records[index]
        if "val_psnr" in record:
            curve.append({**record, "hours": hours, "wall_hours": record["wall_seconds"] / 3600})
    return curve, cpu_rate


@dataclass(frozen=True)
class StopVerdict:
    stop: bool
    reason: str
    hours: float  # CPU-equivalent hours at the last validation
    best: float  # best validation PSNR so far
    gain: float  # of the best over the last window (inf before a whole window has passed)


def stop_verdict(
    curve: list[dict], min_hours: float = 0.0, window_hours: float = 3.0, min_gain: float = 0.0,
    max_hours: float = 0.0,
) -> StopVerdict:  # fmt: skip
    """The rule on a curve of :func:`validation_curve`. ``min_gain`` 0 turns the gain test off and
    ``max_hours`` 0 the limit, so the defaults never stop a run."""
    if not curve:
        return StopVerdict(False, "keep training: no validation yet", 0.0, float("-inf"), float("inf"))
    now = curve[-1]["hours"]
    best = max(record["val_psnr"] for record in curve)
    earlier = [record["val_psnr"] for record in curve if record["hours"] <= now - window_hours]
    gain = best - max(earlier) if earlier else float("inf")
    if max_hours and now >= max_hours:
        return StopVerdict(True, f"stop: {max_hours:g} machine-hours reached", now, best, gain)
    if now < min_hours:
        return StopVerdict(False, f"keep training: judged only after {min_hours:g} machine-hours", now, best, gain)
    if min_gain and gain < min_gain:
        reason = f"stop: less than {min_gain:g} dB gained over the last {window_hours:g} machine-hours"
        return StopVerdict(True, reason, now, best, gain)
    return StopVerdict(False, "keep training: still gaining", now, best, gain)


class StopRule(Protocol):
    """The settings of a stopping rule: ``train.stop`` (:class:`sian.training.config.StopConfig`)."""

    min_hours: float
    window_hours: float
    min_gain: float
    max_hours: float


def summarize_run(log: str | os.PathLike, rule: StopRule) -> list[str]:
    """A run's validation curve against machine-hours, its throughput per machine and its rule's verdict, as lines.

    Args:
        log: the run's ``log.jsonl``.
        rule: the stopping rule to judge by, with ``min_hours``, ``window_hours``, ``min_gain`` and ``max_hours``
            (``train.stop`` of the run's config, :class:`sian.training.config.StopConfig`).

    Examples:
        >>> import json, tempfile
        >>> from types import SimpleNamespace
        >>> records = [{"step": 0, "machine": "a CPU"}, {"step": 10, "wall_seconds": 3600.0},
        ...            {"step": 10, "wall_seconds": 3600.0, "val_psnr": 30.0, "val_ssim": 0.9, "val_input_psnr": 25.0}]
        >>> with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        ...     _ = f.write("".join(json.dumps(r) + "\\n" for r in records))
        >>> rule = SimpleNamespace(min_hours=0.0, window_hours=1.0, min_gain=0.05, max_hours=0.5)
        >>> summarize_run(f.name, rule)[-1]
        'stop: 0.5 machine-hours reached'
    """
    records = read_records(log)
    curve, cpu_rate = validation_curve(records)
    lines = []
    for record in curve:
        # A mixture's validation also logs each source's own mean: val_psnr_pairs, val_psnr_synthetic, ...
        groups = "".join(f", {key[9:]} {value:.3f}" for key, value in record.items() if key.startswith("val_psnr_"))
        lines.append(f"step {record['step']:6d}  {record['hours']:6.2f} h ({record['wall_hours']:5.2f} wall)  "
                     f"validation Y-PSNR {record['val_psnr']:.3f} dB (rainy input {record['val_input_psnr']:.3f}"
                     f"{groups}), SSIM {record['val_ssim']:.4f}")  # fmt: skip
    if not curve:
        return [*lines, "no validation yet"]
    settings = {key: getattr(rule, key) for key in ("min_hours", "window_hours", "min_gain", "max_hours")}
    verdict = stop_verdict(curve, **settings)
    window = settings["window_hours"]
    gain = f"{verdict.gain:.3f} dB" if verdict.gain != float("inf") else f"none yet (no validation {window:g} h back)"
    lines += ["", f"{verdict.hours:.2f} CPU-equivalent hours ({curve[-1]['wall_hours']:.2f} wall-clock; CPU rate "
                  f"{cpu_rate:.0f} steps/h); best validation {verdict.best:.3f} dB; gain over the last {window:g} h: "
                  f"{gain}", "throughput per machine (wall clock, validation and checkpoints included):"]  # fmt: skip
    for machine, (steps, hours) in throughput(records).items():
        lines.append(f"  {machine}: {steps} steps in {hours:.2f} h = {steps / (hours * 3600):.3f} steps/s")
    if not (settings["min_gain"] or settings["max_hours"]):
        lines.append("no stopping rule: the config has no train.stop (set train.stop.min_gain or max_hours)")
    else:
        lines.append(verdict.reason)
    return lines
