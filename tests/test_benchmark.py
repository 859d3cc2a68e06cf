from pathlib import Path

import pytest
import torch

from sian.benchmark import BenchRow, interleaved_times, run_benchmark, to_markdown, turn_ratios


@pytest.mark.slow
def test_benchmark_reports_every_model_and_the_ratios():
    # `auto` is what `sian derain` runs: fp32 or bf16 on this CPU, either way one of the rows already named.
    rows, machine = run_benchmark([(40, 32)], train_batch=2, train_patch=24, repeats=1, warmup=0,
                                  infer_precisions=("fp32", "auto", "bf16"))  # fmt: skip
    assert [(r.kind, r.model, r.precision) for r in rows] == [
        ("inference", "sian", "fp32"), ("inference", "prenet", "fp32"),
        ("inference", "sian", "bf16"), ("inference", "prenet", "bf16"), ("training", "sian", "fp32"),
        ("training", "prenet", "fp32"), ("training", "sian", "bf16"), ("training", "prenet", "bf16"),
    ]  # fmt: skip
    sian, prenet = rows[0], rows[1]
    # SIAN costs about 1.46 M multiply-adds per pixel, PReNet about 1.0 M (2 FLOPs per multiply-add).
    assert 1.3 < sian.gflops / prenet.gflops < 1.6
    assert abs(sian.gflops * 1e9 / (40 * 32) / 2 - 1.46e6) < 0.1e6
    assert rows[2].gflops == pytest.approx(sian.gflops)  # the same work in another precision
    assert all(r.seconds > 0 and r.peak_rss_mb > 50 for r in rows)
    table = to_markdown(rows, machine)
    assert "time ratio sian/prenet" in table and "inference 40x32" in table and machine["cpu"] in table
    assert "per-turn ratios" in table and all(len(r.turn_seconds) == 1 for r in rows)
    # Both precisions for inference and training, each speed-up of bf16, and the CPU features behind `auto`.
    assert "training 2x24x24 bf16: time ratio sian/prenet" in table and "training 2x24x24 sian: bf16 step rate" in table
    assert "inference 40x32 bf16: time ratio sian/prenet" in table and "inference 40x32 sian: bf16 image rate" in table
    assert set(machine["cpu_features"]) == {"amx_bf16", "avx512_bf16", "avx512_f", "avx2"}
    assert "CPU features:" in table and machine["auto_precision"] in table
    lstm = "one compiled pass" if machine["compiled_convlstm"] else "PyTorch operations"
    dog = "the fused compiled kernel" if machine["fused_dog"] else "PyTorch operations"
    assert f"The ConvLSTM update (inference, both models): {lstm}" in table
    assert f"SIAN's DoG pyramid (inference): {dog}" in table
    pyramid = "one compiled pass each" if machine["compiled_pyramid"] else "PyTorch operations"
    assert f"SIAN's attention step and coarse-to-fine fusion inputs (inference): {pyramid}" in table


def test_bench_refuses_a_precision_it_cannot_measure_on_the_cpu():
    from typer.testing import CliRunner

    from sian.cli import app

    result = CliRunner().invoke(app, ["bench", "--size", "8x8", "--precision", "fp16", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "--precision takes fp32 or bf16 or auto on cpu (fp16 needs --device cuda), got 'fp16'" in result.output
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):  # the Python API refuses it too
        run_benchmark([(8, 8)], repeats=1, warmup=0, train_precisions=(), infer_precisions=("fp16",), device="cpu")


def test_bench_on_an_absent_gpu_is_a_clear_error(monkeypatch):
    from typer.testing import CliRunner

    from sian.cli import app

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(app, ["bench", "--size", "8x8", "--device", "cuda"])
    assert result.exit_code == 2 and "sees no CUDA device" in result.output


def test_gpu_rows_report_gpu_memory_and_every_reduced_precision():
    def row(model, precision, seconds):
        return BenchRow("inference", model, "8x8", precision, seconds, 1.0, 2.0, 3.0, 900.0, [seconds], "cuda", 123.0)

    rows = [row(m, p, s * (1.5 if m == "sian" else 1.0)) for p, s in (("fp32", 0.04), ("bf16", 0.02), ("fp16", 0.01))
            for m in ("sian", "prenet")]  # fmt: skip
    machine = {"date": "d", "cpu": "c", "threads": 16, "torch": "t", "python": "p", "cpu_features": {}, "cuda": "13.0",
               "auto_precision": "bf16 (auto: G supports bf16)", "gpu": "G (compute capability 9.0)"}  # fmt: skip
    table = to_markdown(rows, machine)
    assert "Ran on the GPU: G (compute capability 9.0), CUDA 13.0" in table and "the fused kernel is the CPU's" in table
    assert "| peak RSS (MB) | peak GPU (MB) |" in table and "| 900 | 123 |" in table
    assert "sian: bf16 image rate 2.00x fp32's" in table and "sian: fp16 image rate 4.00x fp32's" in table
    assert "inference 8x8 fp16: time ratio sian/prenet = 1.50" in table


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_bench_on_the_gpu_in_every_precision():
    rows, machine = run_benchmark([(40, 32)], train_batch=2, train_patch=24, repeats=1, warmup=1,
                                  train_precisions=("fp32", "fp16"), infer_precisions=("fp32", "bf16", "fp16", "auto"),
                                  device="cuda")  # fmt: skip
    assert {(r.kind, r.precision) for r in rows} == {
        ("inference", "fp32"), ("inference", "bf16"), ("inference", "fp16"), ("training", "fp32"), ("training", "fp16")
    }  # fmt: skip
    assert all(r.device == "cuda" and r.peak_gpu_mb > 0 and r.seconds > 0 for r in rows)
    assert "compute capability" in machine["gpu"] and "Ran on the GPU" in to_markdown(rows, machine)


@pytest.mark.slow
def test_bench_without_training_rows():
    from typer.testing import CliRunner

    from sian.cli import app

    bench = ["bench", "--size", "16x12", "--repeats", "1", "--train-precision", "none", "--images", "0"]
    result = CliRunner().invoke(app, bench)
    assert result.exit_code == 0, result.output
    assert "| inference | sian | 16x12 |" in result.output and "| training |" not in result.output
    mixed = CliRunner().invoke(app, [*bench, "--train-precision", "bf16"])
    assert mixed.exit_code == 2 and "got 'none'" in mixed.output


def test_turns_reverse_their_order_so_neither_model_always_runs_second():
    calls = []
    workloads = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = interleaved_times(workloads, warmup=1, repeats=4)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then 4 turns
    assert {name: len(t) for name, t in times.items()} == {"a": 4, "b": 4}


def test_turn_ratios_pair_runs_of_the_same_turn():
    def row(turns):
        return BenchRow("inference", "m", "1x1", "fp32", 0.0, 0.0, 0.0, 0.0, 0.0, turns)

    # One disturbed turn (the 9.0 / 3.0 pair) moves the median of paired ratios little.
    r = turn_ratios(row([1.5, 3.0, 9.0, 1.6, 1.5]), row([1.0, 2.0, 3.0, 1.0, 1.0]))
    assert r["turns"] == 5 and r["median"] == 1.5
    assert r["q1"] == 1.5 and r["q3"] == 1.6
    single = turn_ratios(row([2.0]), row([1.0]))
    assert single == {"median": 2.0, "q1": 2.0, "q3": 2.0, "turns": 1}
    with pytest.raises(ValueError):
        turn_ratios(row([1.0, 2.0]), row([1.0]))


STAND_IN_RPDNET = '''
"""A stand-in for the authors' models/rpdnet.py: their class name and interface (RPDNet(), load_state_dict
of their keys, forward returning every stage's output), computed by the tests' re-statement of their forward."""
import sys
import torch
sys.path.insert(0, {tests!r})
from release_reference import release_sian


class RPDNet(torch.nn.Module):
    def load_state_dict(self, state_dict, strict=True):
        self.state = {{key: value.float() for key, value in state_dict.items()}}

    def forward(self, x):
        return release_sian(self.state, x)
'''


@pytest.mark.slow
def test_bench_times_the_default_path_beside_the_authors_code(tmp_path):
    import json

    from typer.testing import CliRunner

    from release_reference import random_authors_sian
    from sian.cli import app

    code = tmp_path / "authors"
    code.mkdir()
    (code / "rpdnet.py").write_text(STAND_IN_RPDNET.format(tests=str(Path(__file__).parent)))
    weights = tmp_path / "rain100l.pth"
    torch.save({k: v.float() for k, v in random_authors_sian().items()}, weights, _use_new_zipfile_serialization=False)
    bench = ["bench", "--size", "24x16", "--repeats", "1", "--train-precision", "none", "--images", "2",
             "--authors-code", str(code), "--authors-weights", str(weights), "--json", "-"]  # fmt: skip
    result = CliRunner().invoke(app, bench)
    assert result.exit_code == 0, result.output
    path = json.loads(result.stdout)["default_path"]
    assert path["size"] == "24x16" and path["images"] == 2 and path["one_shot_seconds"] > 0
    assert path["images_per_second"] > 0 and path["authors_seconds"] > 0
    assert path["speedup"] == pytest.approx(path["authors_seconds"] / path["seconds_per_image"])
    missing = CliRunner().invoke(app, [*bench[:-2], "--authors-code", str(tmp_path)])
    assert missing.exit_code == 2 and "no rpdnet.py" in missing.output
