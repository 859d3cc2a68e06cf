import pytest

from sian.benchmark import BenchRow, interleaved_times, run_benchmark, to_markdown, turn_ratios


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


def test_bench_refuses_a_precision_it_cannot_measure_on_the_cpu():
    from typer.testing import CliRunner

    from sian.cli import app

    result = CliRunner().invoke(app, ["bench", "--size", "8x8", "--precision", "fp16"])
    assert result.exit_code == 2 and "--precision takes fp32 or bf16 or auto, got 'fp16'" in result.output


def test_bench_without_training_rows():
    from typer.testing import CliRunner

    from sian.cli import app

    bench = ["bench", "--size", "16x12", "--repeats", "1", "--train-precision", "none"]
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
