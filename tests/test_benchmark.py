from sian.benchmark import run_benchmark, to_markdown


def test_benchmark_reports_every_model_and_the_ratios():
    rows, machine = run_benchmark([(40, 32)], train_batch=2, train_patch=24, repeats=1, warmup=0)
    assert [(r.kind, r.model) for r in rows] == [
        ("inference", "sian"), ("inference", "prenet"), ("training", "sian"), ("training", "prenet"),
    ]  # fmt: skip
    sian, prenet = rows[0], rows[1]
    # SIAN costs about 1.46 M multiply-adds per pixel, PReNet about 1.0 M (2 FLOPs per multiply-add).
    assert 1.3 < sian.gflops / prenet.gflops < 1.6
    assert abs(sian.gflops * 1e9 / (40 * 32) / 2 - 1.46e6) < 0.1e6
    assert all(r.seconds > 0 and r.peak_rss_mb > 50 for r in rows)
    table = to_markdown(rows, machine)
    assert "time ratio sian/prenet" in table and "inference 40x32" in table and machine["cpu"] in table
