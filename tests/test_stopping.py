"""sian.training.stopping: a run's curve in CPU-equivalent hours (a GPU's steps at the run's CPU rate) and
the stopping rule the trainer applies (the Rain100L run's, once applied by hand)."""

import json
import math
from pathlib import Path

import pytest

from sian.training.stopping import read_records, stop_verdict, throughput, validation_curve

REPO = Path(__file__).resolve().parents[1]
CPU = "AMD EPYC, 2 cores (avx2), torch 2.13.0+cpu"
GPU = "NVIDIA H200, torch 2.11.0+cu130"


def _log(tmp_path, records):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return read_records(path)


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
    curve, rate = validation_curve(log)
    assert rate == 1000.0
    assert [round(r["hours"], 6) for r in curve] == [0.5, 2.5, 3.0]
    assert [round(r["wall_hours"], 6) for r in curve] == [0.5, round(1860 / 3600, 6), round(3660 / 3600, 6)]
    table = throughput(log)
    assert table[GPU] == (2000, 60 / 3600)
    assert sorted(steps for steps, _ in table.values()) == [500, 500, 2000]  # unnamed first CPU, named CPU, GPU


def test_a_cpu_only_run_gets_its_wall_clock_hours(tmp_path):
    log = _log(tmp_path, [{"step": 0, "precision": "fp32", "machine": CPU},
                          {"step": 100, "wall_seconds": 720.0}, _val(100, 720.0, 30.0)])  # fmt: skip
    curve, _ = validation_curve(log)
    assert curve[0]["hours"] == curve[0]["wall_hours"] == 0.2


def _curve(*points):
    return [{"hours": hours, "val_psnr": psnr} for hours, psnr in points]


def test_the_rule_judges_after_min_hours_on_the_gain_of_the_best_over_the_window():
    rule = {"min_hours": 12, "window_hours": 3, "min_gain": 0.05, "max_hours": 30}
    rising = _curve((10, 37.0), (11, 37.2), (13, 37.3), (14, 37.36))  # best 37.36 vs 37.2 three hours before
    assert not stop_verdict(rising, **rule).stop
    assert stop_verdict(rising, **rule).gain == pytest.approx(0.16)
    early = _curve((2, 30.0), (3, 30.0), (6, 30.0))
    assert not stop_verdict(early, **rule).stop and "after 12" in stop_verdict(early, **rule).reason
    flat = _curve((12, 37.30), (13, 37.33), (14, 37.2), (15, 37.34))  # 37.34 - 37.30 < 0.05
    verdict = stop_verdict(flat, **rule)
    assert verdict.stop and verdict.best == 37.34 and verdict.gain == pytest.approx(0.04)
    assert "less than 0.05 dB" in verdict.reason
    # A new best keeps the run going for another window; the limit ends it whatever the gain.
    assert not stop_verdict([*flat, {"hours": 15.5, "val_psnr": 37.5}], **rule).stop
    assert stop_verdict(_curve((29, 37.0), (30.2, 38.0)), **rule).reason == "stop: 30 machine-hours reached"
    # Before a whole window has passed there is no gain to judge (inf): no stop.
    assert math.isinf(stop_verdict(_curve((12.5, 30.0)), min_gain=0.05, window_hours=3).gain)


def test_the_default_rule_never_stops():
    assert not stop_verdict(_curve((1, 30.0), (100, 30.0), (1000, 30.0))).stop


def test_the_summary_judges_by_the_configs_rule(tmp_path):
    """`sian train CONFIG --summary`: the curve and the verdict of the config's train.stop (off by default)."""
    from typer.testing import CliRunner

    from sian.cli import app

    records = [{"step": 0, "precision": "fp32", "machine": CPU},
               {"step": 100, "wall_seconds": 3600.0}, _val(100, 3600.0, 30.0),
               {"step": 200, "wall_seconds": 7200.0}, _val(200, 7200.0, 30.01)]  # fmt: skip
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = tmp_path / "run.yaml"

    def summarize(*overrides):
        config.write_text(f"data: {{train_pairs: [x]}}\ntrain: {{steps: 10, out_dir: {tmp_path}}}\n")
        result = CliRunner().invoke(app, ["train", str(config), *overrides, "--summary"])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()

    assert summarize()[-1].startswith("no stopping rule")
    # A window reaching back before the first validation has no gain to show (it printed "inf dB").
    assert any(line.endswith("gain over the last 3 h: none yet (no validation 3 h back)") for line in summarize())
    rule = ["train.stop.window_hours=1", "train.stop.min_gain=0.05"]
    assert summarize(*rule)[-1] == "stop: less than 0.05 dB gained over the last 1 machine-hours"
    assert summarize(*rule, "train.stop.min_gain=0.001")[-1] == "keep training: still gaining"
    config.write_text(f"data: {{train_pairs: [x]}}\ntrain: {{steps: 10, out_dir: {tmp_path / 'none'}}}\n")
    result = CliRunner().invoke(app, ["train", str(config), "--summary"])
    assert result.exit_code == 2 and "has not started" in result.output


def test_the_rain100l_runs_rule_is_the_one_written_before_training():
    """The rule was fixed before the run started (the config's header); the trainer must apply exactly it."""
    from sian.training import load_config

    config = load_config(REPO / "configs/rain100l-cpu.yaml", ["data.train_pairs=[x]"])
    stop = config.train.stop
    assert (stop.min_hours, stop.window_hours, stop.min_gain, stop.max_hours) == (12, 3, 0.05, 30)
    assert config.train.val_every == 500


def test_the_second_rain100l_run_averages_weights_as_its_trials_decided():
    """configs/rain100l-cpu-2.yaml's ema_decay is what its committed rule makes of the two committed trials
    (identical runs but for ema_decay, from the first run's last state), and the run did not start before both
    were scored."""
    from omegaconf import OmegaConf

    from sian.training import load_config

    configs, scores = [], {}
    for path in sorted((REPO / "checkpoints/sian-rain100l-ours-2-ema-trial").glob("*/config.yaml")):
        config = OmegaConf.to_container(OmegaConf.load(path))
        decay, _ = config["train"].pop("ema_decay"), config["train"].pop("out_dir")
        configs.append(config)
        val = validation_curve(read_records(path.with_name("log.jsonl")))[0]
        if val and val[-1]["step"] == config["train"]["steps"]:
            scores[decay] = val[-1]["val_psnr"]
    assert all(config == configs[0] for config in configs), "the trials differ in more than ema_decay"
    assert configs[0]["model"]["init"] == "checkpoints/sian-rain100l-ours/state.pt"
    run = load_config(REPO / "configs/rain100l-cpu-2.yaml", ["data.train_pairs=[x]"]).train
    if len(scores) < 2:
        assert not (REPO / run.out_dir / "log.jsonl").exists(), "the run started before both trials were scored"
        pytest.skip(f"the weight-averaging trials are not both scored yet ({len(scores)} of 2)")
    assert run.ema_decay == (0.999 if scores[0.999] >= scores[0.0] else 0.0)
