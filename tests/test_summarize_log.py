"""scripts/summarize_log.py: issue 14's stopping rule counts a GPU's steps in CPU-equivalent hours."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "summarize_log.py"
spec = importlib.util.spec_from_file_location("summarize_log", SCRIPT)
summarize = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summarize)

CPU = "AMD EPYC, 2 cores (avx2), torch 2.13.0+cpu"
GPU = "NVIDIA H200, torch 2.11.0+cu130"


def _log(tmp_path, records):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _val(step, wall, psnr):
    return {"step": step, "val_psnr": psnr, "val_ssim": 0.9, "val_input_psnr": 27.0, "wall_seconds": wall}


def test_gpu_steps_count_at_the_runs_cpu_rate(tmp_path):
    log = _log(tmp_path, [
        {"step": 0, "precision": "fp32"},  # the first runs had no "machine": a CPU
        {"step": 500, "wall_seconds": 1800.0}, _val(500, 1800.0, 30.0),  # 1000 steps/hour on the CPU
        {"step": 500, "precision": "fp32", "machine": GPU},
        {"step": 2500, "wall_seconds": 1860.0}, _val(2500, 1860.0, 32.0),  # 2000 steps in a minute
        {"step": 2500, "precision": "fp32", "machine": CPU},
        {"step": 3000, "wall_seconds": 3660.0}, _val(3000, 3660.0, 32.5),
    ])  # fmt: skip
    curve, rate = summarize.read_curve(log)
    assert rate == 1000.0
    assert [round(r["hours"], 6) for r in curve] == [0.5, 2.5, 3.0]
    assert [round(r["wall_hours"], 6) for r in curve] == [0.5, round(1860 / 3600, 6), round(3660 / 3600, 6)]
    table = summarize.throughput(summarize.read_records(log))
    assert table[GPU] == (2000, 60 / 3600)
    assert sorted(steps for steps, _ in table.values()) == [500, 500, 2000]  # unnamed first CPU, named CPU, GPU


def test_a_cpu_only_run_gets_its_wall_clock_hours(tmp_path):
    log = _log(tmp_path, [{"step": 0, "precision": "fp32", "machine": CPU},
                          {"step": 100, "wall_seconds": 720.0}, _val(100, 720.0, 30.0)])  # fmt: skip
    curve, _ = summarize.read_curve(log)
    assert curve[0]["hours"] == curve[0]["wall_hours"] == 0.2
