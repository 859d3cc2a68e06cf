import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sian.cli import app
from sian.models import create_model
from sian.weights import save_weights

runner = CliRunner()


@pytest.fixture
def tiny_model(tmp_path):
    model = create_model("sian", channels=4, stages=2)
    return save_weights(tmp_path / "tiny.safetensors", model, "sian", model.config)


def write_png(path, seed=0, size=(24, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def test_derain_folder_writes_pngs_skips_existing_and_reports_bad_files(tmp_path, tiny_model):
    write_png(tmp_path / "in" / "a.png", 0)
    write_png(tmp_path / "in" / "b.jpg", 1)
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = runner.invoke(app, ["derain", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model)])
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert "derained 2 image(s)" in result.output
    assert "broken.png" in result.output and "not an image format" in result.output
    assert Image.open(out / "a.png").size == (20, 24)

    before = (out / "a.png").read_bytes()
    (out / "a.png").write_bytes(b"user data")
    again = runner.invoke(app, ["derain", str(tmp_path / "in" / "a.png"), "-o", str(out), "--model", str(tiny_model)])
    assert again.exit_code == 0 and "skipped 1 existing output" in again.output
    assert (out / "a.png").read_bytes() == b"user data"
    forced = runner.invoke(
        app, ["derain", str(tmp_path / "in" / "a.png"), "-o", str(out), "--model", str(tiny_model), "--overwrite"]
    )
    assert forced.exit_code == 0 and (out / "a.png").read_bytes() == before


def test_verbose_says_which_precision_ran_and_why_without_other_libraries_debug_lines(tmp_path, tiny_model):
    """`--verbose` once printed PIL's PNG decoder's debug lines (`STREAM b'IHDR' ...`), one per chunk read."""
    source = write_png(tmp_path / "a.png")
    result = runner.invoke(app, ["--verbose", "derain", str(source), "-o", str(tmp_path / "out"), "--model",
                                 str(tiny_model), "--precision", "auto"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(auto: " in result.output  # the reason auto gave, e.g. "(auto: this CPU has AVX512-BF16)"
    assert "STREAM" not in result.output


@pytest.mark.slow
def test_verbose_says_how_an_image_was_tiled_and_why(tmp_path, tiny_model):
    source = write_png(tmp_path / "a.png", size=(200, 150))  # tiled under a tiny budget or an explicit --tile
    common = ["--verbose", "derain", str(source), "--model", str(tiny_model), "--precision", "fp32",
              "--tile-overlap", "8"]  # fmt: skip
    auto = runner.invoke(app, [*common, "-o", str(tmp_path / "auto"), "--max-memory-gb", "0.000001"])
    assert auto.exit_code == 0, auto.output
    line = "150x200 in 4 tiles of at most 128 pixels, overlap 8 (automatic: the memory budget in fp32)"
    assert line in auto.output.splitlines()  # a line of its own: it once cut into the progress bar's line
    asked = runner.invoke(app, [*common, "-o", str(tmp_path / "asked"), "--tile", "64"])
    assert asked.exit_code == 0 and "150x200 in 12 tiles of at most 64 pixels, overlap 8 (as asked)" in asked.output
    whole = runner.invoke(app, [*common, "-o", str(tmp_path / "whole")])
    assert whole.exit_code == 0 and "tiles of at most" not in whole.output


def test_global_flags_work_after_the_command_too(tmp_path, tiny_model):
    """`sian derain --verbose ...` (as users write it) failed with "No such option: --verbose": click parses a
    group's options only before the command name. A `--` still ends the options: a file named `-v` stays one."""
    source = write_png(tmp_path / "a.png")
    verbose = runner.invoke(app, ["derain", str(source), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
                                  "--verbose"])  # fmt: skip
    assert verbose.exit_code == 0, verbose.output
    plain = runner.invoke(app, ["derain", str(source), "-o", str(tmp_path / "out1"), "--model", str(tiny_model)])
    assert "derain with " in verbose.output and "derain with " not in plain.output  # the debug line, --verbose only
    quiet = runner.invoke(app, ["derain", str(source), "-o", str(tmp_path / "out2"), "--model", str(tiny_model), "-q"])
    assert quiet.exit_code == 0 and quiet.stdout == "" and (tmp_path / "out2" / "a.png").is_file()
    literal = runner.invoke(app, ["derain", "-o", str(tmp_path / "out3"), "--model", str(tiny_model), "--", "-v"])
    assert literal.exit_code != 0 and "-v" in literal.output and "No such option" not in literal.output


def test_derain_never_replaces_an_input_even_with_overwrite(tmp_path, tiny_model):
    src = write_png(tmp_path / "a.png")
    original = src.read_bytes()
    result = runner.invoke(app, ["derain", str(src), "-o", str(tmp_path), "--model", str(tiny_model), "--overwrite"])
    assert result.exit_code == 1 and "would replace an input" in result.output
    assert src.read_bytes() == original


def test_derain_globs_and_clear_errors(tmp_path, tiny_model):
    write_png(tmp_path / "x1.png")
    write_png(tmp_path / "x2.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["derain", str(tmp_path / "x*.png"), "-o", str(out), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["x1.png", "x2.png"]
    missing = runner.invoke(app, ["derain", str(tmp_path / "nothing*.png"), "-o", str(out)])
    assert missing.exit_code == 2 and "no input images" in missing.output
    unknown = runner.invoke(app, ["derain", str(tmp_path / "x1.png"), "-o", str(out), "--model", "sian-rain100h"])
    assert unknown.exit_code == 2 and "sian weights import FILE --name sian-rain100h" in unknown.output


def test_eval_prints_means_and_writes_csv(tmp_path, tiny_model):
    for i in range(3):
        write_png(tmp_path / "data" / "rain" / f"{i}.png", i)
        write_png(tmp_path / "data" / "norain" / f"{i}.png", 10 + i)
    write_png(tmp_path / "data" / "rain" / "orphan.png", 9)
    table = tmp_path / "r.csv"
    result = runner.invoke(
        app, ["eval", "--model", str(tiny_model), "--data", str(tmp_path / "data"), "--csv", str(table),
              "--quantize", "floor"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "layout generic" in result.output and "no clean image for rainy" in result.output
    rows = list(csv.DictReader(table.open()))
    assert [r["name"] for r in rows] == ["0", "1", "2"]
    mean_psnr = np.mean([float(r["psnr"]) for r in rows])
    assert f"{mean_psnr:10.4f}" in result.output


def test_eval_rejects_unknown_layout_folder(tmp_path, tiny_model):
    (tmp_path / "photos").mkdir()
    result = runner.invoke(app, ["eval", "--model", str(tiny_model), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "cannot tell the layout" in result.output


def test_weights_list_and_models():
    listing = runner.invoke(app, ["weights", "list"])
    assert listing.exit_code == 0, listing.output
    rows = {line.split()[0]: line.split() for line in listing.output.splitlines()[2:] if line.strip()}
    assert rows["sian-rain100l"][1:3] == ["sian", "no"]  # registered, not installed in the empty SIAN_HOME
    assert rows["sian-synth-light"][2] == "bundled"
    # Pins names of 18+ characters running into the next column ("sian-streaks-heavysian").
    assert rows["sian-streaks-heavy"][1:3] == ["sian", "bundled"] and rows["sian-rain100l-ours"][1] == "sian"
    models = runner.invoke(app, ["models"])
    assert models.exit_code == 0 and "sian_baseline_lstm" in models.output


@pytest.mark.slow
def test_public_api_derain_takes_and_returns_pil_and_arrays(tiny_model):
    import sian

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 18, 3), dtype=np.uint8))
    out = sian.derain(image, model=str(tiny_model), device="cpu")
    assert isinstance(out, Image.Image) and out.size == image.size and out.mode == "RGB"
    as_float = sian.derain(np.asarray(image) / 255.0, model=sian.load_model(tiny_model))
    assert as_float.dtype == np.float32 and as_float.shape == (16, 18, 3) and 0 <= as_float.min() <= as_float.max() <= 1
    assert np.array_equal(sian.derain(np.asarray(image), model=str(tiny_model)), np.asarray(out))


@pytest.mark.slow
def test_derain_with_explicit_tiles_matches_whole_image_closely(tmp_path, tiny_model):
    write_png(tmp_path / "in" / "big.png", 3, size=(70, 90))
    whole = runner.invoke(
        app, ["derain", str(tmp_path / "in"), "-o", str(tmp_path / "whole"), "--model", str(tiny_model)]
    )
    tiled = runner.invoke(
        app, ["derain", str(tmp_path / "in"), "-o", str(tmp_path / "tiled"), "--model", str(tiny_model),
              "--tile", "32", "--tile-overlap", "12"],
    )  # fmt: skip
    assert whole.exit_code == 0 and tiled.exit_code == 0, tiled.output
    a = np.asarray(Image.open(tmp_path / "whole" / "big.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "tiled" / "big.png")).astype(int)
    assert a.shape == b.shape == (70, 90, 3) and np.abs(a - b).mean() < 2


def test_synth_writes_pairs_whole_and_never_clobbers(tmp_path):
    write_png(tmp_path / "clean" / "a.png", 0, size=(40, 48))
    out = tmp_path / "synth"
    first = runner.invoke(app, ["synth", str(tmp_path / "clean"), "-o", str(out), "--seed", "5"])
    assert first.exit_code == 0, first.output
    assert (out / "rainy" / "a.png").is_file() and (out / "gt" / "a.png").is_file()
    rainy_before = (out / "rainy" / "a.png").read_bytes()
    (out / "rainy" / "a.png").unlink()  # only the clean half is left: the pair must not be half-rewritten
    again = runner.invoke(app, ["synth", str(tmp_path / "clean"), "-o", str(out), "--seed", "5"])
    assert again.exit_code == 1 and "exists" in again.output
    assert not (out / "rainy" / "a.png").exists()
    assert len((out / "rain_params.jsonl").read_text().splitlines()) == 1  # the refused pair is not recorded
    forced = runner.invoke(app, ["synth", str(tmp_path / "clean"), "-o", str(out), "--seed", "5", "--overwrite"])
    assert forced.exit_code == 0 and (out / "rainy" / "a.png").read_bytes() == rainy_before
    # --overwrite appended a second record for the same pair; it replaces it.
    write_png(tmp_path / "clean" / "b.png", 1, size=(40, 48))
    runner.invoke(app, ["synth", str(tmp_path / "clean"), "-o", str(out), "--seed", "6", "--overwrite"])
    records = [json.loads(line) for line in (out / "rain_params.jsonl").read_text().splitlines()]
    assert sorted(r["name"] for r in records) == ["a", "b"] and {r["seed"] for r in records} == {6, 7}


def test_synth_takes_the_classic_renderer_and_mixtures_and_names_a_bad_preset(tmp_path):
    write_png(tmp_path / "clean" / "a.png", 0, size=(40, 48))
    for preset in ("classic", "light+classic"):
        out = tmp_path / preset
        result = runner.invoke(app, ["synth", str(tmp_path / "clean"), "-o", str(out), "--preset", preset])
        assert result.exit_code == 0, result.output
        record = json.loads((out / "rain_params.jsonl").read_text())
        assert record["preset"] == preset
    bad = runner.invoke(app, ["synth", str(tmp_path / "clean"), "-o", str(tmp_path / "x"), "--preset", "drizzle"])
    assert bad.exit_code != 0 and "drizzle" in bad.output and not (tmp_path / "x").exists()


def test_json_results_go_to_stdout_and_human_lines_to_stderr(tmp_path, tiny_model):
    """Machine-readable results under one flag, `--json FILE|-`, for derain, eval and bench."""
    write_png(tmp_path / "in" / "a.png", 0)
    result = runner.invoke(app, ["derain", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                 "--model", str(tiny_model), "--json", "-"])  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [Path(w["output"]).name for w in document["written"]] == ["a.png"] and document["failed"] == []
    assert "derained 1 image(s)" in result.stderr
    pairs = tmp_path / "pairs"
    write_png(pairs / "rainy" / "x.png", 1)
    write_png(pairs / "gt" / "x.png", 2)
    evaluated = runner.invoke(app, ["eval", "--model", str(tiny_model), "--data", str(pairs),
                                    "--json", str(tmp_path / "eval.json")])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["summary"]["images"] == 1 and saved["images"][0]["name"] == "x"
    assert f"{saved['summary']['psnr']:10.4f}" in evaluated.stdout  # the same figure for people


def test_quiet_prints_nothing_but_errors(tmp_path, tiny_model):
    write_png(tmp_path / "in" / "a.png", 0)
    (tmp_path / "in" / "bad.png").write_bytes(b"junk")
    result = runner.invoke(app, ["--quiet", "derain", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                 "--model", str(tiny_model)])  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    assert "bad.png" in result.stderr and (tmp_path / "out" / "a.png").is_file()


@pytest.mark.slow
def test_torchrun_splits_a_folder_writes_each_output_once_and_resumes(tmp_path, tiny_model):
    """`torchrun --nproc_per_node=2 -m sian derain` on CPU (gloo) equals one process, byte for byte."""
    import os
    import subprocess
    import sys

    for i in range(5):
        write_png(tmp_path / "in" / f"img{i}.png", i)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads per process in both runs

    def derain(out, *extra, processes=2):
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                    if processes > 1 else [sys.executable])  # fmt: skip
        args = [*launcher, "-m", "sian", "derain", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model),
                "--precision", "fp32", "--json", str(tmp_path / f"{out.name}.json"), *extra]  # fmt: skip
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)

    together = derain(tmp_path / "two")
    assert together.returncode == 0, together.stderr
    report = json.loads((tmp_path / "two.json").read_text())
    outputs = [Path(w["output"]).name for w in report["written"]]
    assert sorted(outputs) == [f"img{i}.png" for i in range(5)] and len(set(outputs)) == 5  # each exactly once
    assert [len(r["written"]) for r in report["ranks"]] == [3, 2] and "rank 1: 2 written" in together.stdout
    alone = derain(tmp_path / "one", processes=1)
    assert alone.returncode == 0, alone.stderr
    for name in outputs:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    # Interrupted job: missing outputs are made, existing ones skipped; a bad file on any rank fails the job.
    (tmp_path / "two" / "img1.png").unlink()
    (tmp_path / "in" / "img5.png").write_bytes(b"not an image")
    again = derain(tmp_path / "two")
    report = json.loads((tmp_path / "two.json").read_text())
    assert again.returncode != 0 and [Path(w["output"]).name for w in report["written"]] == ["img1.png"]
    assert len(report["skipped"]) == 4 and [Path(f["input"]).name for f in report["failed"]] == ["img5.png"]


@pytest.mark.parametrize("fault", ["disk_full_on_the_second_file", "folder_not_writable"])
def test_write_failures_are_reported_per_file_and_leave_no_partial_file(tmp_path, tiny_model, monkeypatch, fault):
    """A full disk mid-batch, or an output folder that cannot be written (simulated at the write
    call: permission bits do not stop root) gives a clear error per file and no partial file."""
    import errno

    for i in range(3):
        write_png(tmp_path / "in" / f"img{i}.png", i)
    writes = []
    real_write = Path.write_bytes

    def faulty_write(self, data):
        if not self.name.startswith(".img"):  # only the outputs' temporary files
            return real_write(self, data)
        writes.append(self.name)
        if fault == "folder_not_writable":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        if len(writes) == 2:  # the disk fills while the second output is written
            real_write(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", faulty_write)
    result = runner.invoke(app, ["derain", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                 "--model", str(tiny_model), "--json", str(tmp_path / "report.json")])  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    assert result.exit_code == 1
    if fault == "disk_full_on_the_second_file":
        assert [Path(w["output"]).name for w in report["written"]] == ["img0.png", "img2.png"]
        assert [Path(f["input"]).name for f in report["failed"]] == ["img1.png"]
        assert "No space left on device" in report["failed"][0]["error"] and "img1.png" in result.output
    else:
        assert report["written"] == [] and len(report["failed"]) == 3
        assert all("Permission denied" in f["error"] for f in report["failed"])
    leftovers = sorted(p.name for p in (tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert leftovers == [Path(w["output"]).name for w in report["written"]]  # no temporary or partial file


def test_eval_off_a_terminal_prints_at_most_one_progress_line_a_minute(tmp_path, tiny_model, monkeypatch):
    """A log file (nohup, CI) gets the bar's first and last state, not a line per image: redrawing on every
    postfix change once wrote one line per image."""
    for i in range(6):
        write_png(tmp_path / "data" / "rain" / f"{i}.png", i)
        write_png(tmp_path / "data" / "norain" / f"{i}.png", 10 + i)
    monkeypatch.delenv("SIAN_NO_PROGRESS", raising=False)
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model), "--data", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    renders = result.output.count("eval:")
    assert 1 <= renders <= 2, result.output  # the opening state and, at close, the final one
    quiet = CliRunner().invoke(app, ["--quiet", "eval", "--model", str(tiny_model), "--data", str(tmp_path / "data")])
    assert quiet.exit_code == 0 and "eval:" not in quiet.output


@pytest.mark.slow
def test_the_library_leaves_the_allocator_alone_unless_asked(tmp_path):
    """Importing sian and calling sian.derain() changes nothing process-wide; sian.keep_freed_memory() is the
    opt-in (the command turns it on). Observed through glibc: an 80 MB block freed and allocated again is faulted
    in afresh by default, and reused once freed memory is kept."""
    script = tmp_path / "faults.py"
    script.write_text(
        "import resource, sys, numpy as np, torch, sian\n"
        "net = sian.create_model('sian', channels=4, stages=2).eval()\n"
        "sian.derain(np.zeros((24, 24, 3), np.uint8), model=net)\n"
        "if sys.argv[1] == 'opt-in':\n    assert sian.keep_freed_memory()\n"
        "def faults():\n    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(3):\n    torch.empty(20_000_000).fill_(1.0)\n"
        "before = faults()\nfor _ in range(3):\n    torch.empty(20_000_000).fill_(2.0)\nprint(faults() - before)\n"
    )
    faults = {}
    for mode in ("library", "opt-in"):
        result = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        faults[mode] = int(result.stdout.split()[-1])
    assert faults["library"] > 45_000 and faults["opt-in"] < 3_000, faults


def test_importing_sian_leaves_torch_compile_unloaded():
    """torch.compile's front end (torch._dynamo) costs over a second to import: a start-up (`sian derain` of one
    photo) must not pay for it unless something compiles."""
    script = (
        "import sys, sian, sian.cli\nprint(sorted(m for m in ('torch._dynamo', 'torch._inductor') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "[]", result.stdout
