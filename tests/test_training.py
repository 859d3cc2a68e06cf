import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sian.hub import load_model
from sian.models import create_model
from sian.precision import describe_machine
from sian.training import load_config, stage_loss, train
from sian.training.datasets import StepSampler, SyntheticPatches, list_clean_images
from sian.training.trainer import release_init
from sian.weights import read_weights_file, sha256_file

pytestmark = pytest.mark.slow  # training runs, DDP jobs and killed processes

REPO = Path(__file__).resolve().parents[1]
EMPTY_CONFIG = REPO / "tests" / "empty_config.yaml"  # everything comes from key=value overrides


def make_clean_folder(folder: Path, count=4, size=(72, 80)) -> Path:
    """Smooth synthetic 'photos' (gradients and discs) as clean training images."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : size[0], 0 : size[1]] / max(size)
    for i in range(count):
        image = np.stack([0.2 + 0.5 * x, 0.3 + 0.4 * y, 0.4 + 0.2 * np.sin(6 * x + i)], -1)
        cy, cx = rng.uniform(0.2, 0.6, 2)
        image[(y - cy) ** 2 + (x - cx) ** 2 < 0.02] *= 0.5
        Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def tiny_overrides(tmp_path: Path, out: str = "run", **extra) -> list[str]:
    clean = make_clean_folder(tmp_path / "clean")
    values = {
        "model.variant": "sian", "model.overrides": "{channels: 6, stages: 2}",
        "data.train_clean": f"[{clean}]", "data.patch_size": 32, "data.val_clean": f"[{clean}]",
        "data.val_count": 2, "data.val_crop": 48, "train.batch_size": 4, "train.steps": 6,
        "train.log_every": 1, "train.val_every": 0, "train.threads": 1, "train.out_dir": str(tmp_path / out),
        "optim.lr": 2e-3,
    }  # fmt: skip
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def test_config_files_load_with_their_base_chain():
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        if path.name in ("cpu-quick.yaml", "sian-synth-light.yaml", "sian-synth-heavy.yaml", "sian-general.yaml",
                         "sian-streaks-heavy.yaml"):  # fmt: skip
            cfg = load_config(path)
        else:  # the paper configs name no data: the user points them at theirs
            cfg = load_config(path, ["data.train_pairs=[somewhere]"])
        assert cfg.optim.lr > 0 and cfg.data.patch_size >= 64
    ablation = load_config(REPO / "configs/ablations/rain100l-baseline.yaml", ["data.train_pairs=[x]"])
    assert ablation.model.variant == "sian_baseline" and ablation.data.patch_stride == 40
    assert ablation.optim.betas == [0.0, 0.999] and ablation.train.epochs == 100
    assert load_config(REPO / "configs/rain1400.yaml", ["data.train_pairs=[x]"]).train.epochs == 50


def test_val_holdout_keeps_validation_images_out_of_training(tmp_path):
    from sian.training.trainer import _build_data
    from sian.training.validation import build_validation_set, validation_sources

    overrides = tiny_overrides(tmp_path, **{"data.val_clean": "[]", "data.val_holdout": 1, "data.val_count": 0})
    cfg = load_config(EMPTY_CONFIG, overrides)
    dataset, _ = _build_data(cfg)
    val = build_validation_set(cfg.data)
    assert [p.stem for p in validation_sources(cfg.data).clean] == val.names  # listed without rendering
    trained = {p.stem for p in dataset.files}
    assert len(trained) == 3 and len(val) == 1 and val.names[0] not in trained
    assert {val.names[0], *trained} == {f"img{i}" for i in range(4)}
    # The draw is fixed: the same config holds out the same image whatever the training seed.
    reseeded = load_config(EMPTY_CONFIG, [*overrides, "train.seed=7"])
    assert build_validation_set(reseeded.data).names == val.names
    with pytest.raises(ValueError, match="val_holdout"):
        load_config(EMPTY_CONFIG, [*overrides, f"data.val_clean=[{tmp_path}]"])
    with pytest.raises(ValueError, match="cannot hold out 4 of 4"):
        _build_data(load_config(EMPTY_CONFIG, [*overrides, "data.val_holdout=4"]))


def test_bad_configs_are_rejected_by_name(tmp_path):
    with pytest.raises(ValueError, match="no training data"):
        load_config(None, ["train.steps=3"])
    with pytest.raises(ValueError, match=r"train\.loss"):
        load_config(None, ["data.train_clean=[x]", "train.steps=3", "train.loss=huber"])
    with pytest.raises(Exception, match="batch_size"):
        load_config(None, ["data.train_clean=[x]", "train.steps=3", "train.batch_size=many"])
    with pytest.raises(Exception, match="nonexistent_key"):
        load_config(None, ["data.train_clean=[x]", "train.nonexistent_key=1"])
    with pytest.raises(ValueError, match=r"data\.val_preset must be one of light, heavy, classic, streaks.* or a mix"):
        load_config(None, ["data.train_clean=[x]", "train.steps=3", "data.val_preset=drizzle"])


def test_val_preset_renders_the_validation_rain_with_another_renderer(tmp_path):
    from sian.io import read_image, to_tensor
    from sian.metrics import quantize
    from sian.synth import synthesize
    from sian.training.validation import VAL_SEED_OFFSET, build_validation_set

    overrides = tiny_overrides(tmp_path, **{"data.val_crop": 0})
    same = build_validation_set(load_config(EMPTY_CONFIG, overrides).data)
    other = build_validation_set(load_config(EMPTY_CONFIG, [*overrides, "data.val_preset=classic"]).data)
    assert other.names == same.names and all(np.array_equal(a, b) for a, b in zip(other.clean, same.clean, strict=True))
    assert not np.array_equal(other.rainy[0], same.rainy[0])
    expected, _ = synthesize(to_tensor(read_image(tmp_path / "clean/img0.png"))[0], "classic", VAL_SEED_OFFSET)
    assert np.array_equal(other.rainy[0], quantize(expected))


def test_step_sampler_splits_every_global_batch_across_ranks():
    single = list(StepSampler(2, 5, 4))
    assert single == list(range(8, 20))
    ranks = [list(StepSampler(2, 5, 4, rank=r, world=2)) for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == single and ranks[0][:2] == [8, 10]
    with pytest.raises(ValueError, match="divide evenly"):
        StepSampler(0, 1, 3, world=2)


def test_samples_are_a_pure_function_of_the_index(tmp_path):
    files = list_clean_images([str(make_clean_folder(tmp_path))])
    data = SyntheticPatches(files, 32, "light", True, seed=5)
    a, b = data[17], data[17]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].shape == (3, 32, 32)
    assert not torch.equal(data[18][0], a[0])


def test_ssim_stage_loss_matches_the_benchmark_ssim_formula():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    clean = rng.random((1, 1, 24, 30))
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
    expected = structural_similarity(noisy[0, 0], clean[0, 0], gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0)  # fmt: skip
    loss = stage_loss([torch.from_numpy(noisy)] * 3, torch.from_numpy(clean), "ssim")
    assert loss.item() == pytest.approx(-3 * expected, abs=1e-6)
    x = torch.rand(2, 3, 16, 16)
    assert stage_loss([x + 0.1], x, "mae").item() == pytest.approx(0.1, abs=1e-6)


def test_training_lowers_the_loss_and_writes_loadable_weights(tmp_path):
    cfg = load_config(None, tiny_overrides(tmp_path, **{"train.steps": 40, "optim.lr": 3e-3}))
    summary = train(cfg, progress=False)
    assert summary["status"] == "finished" and summary["step"] == 40
    trained = load_model(tmp_path / "run/last.safetensors")
    assert trained.config["channels"] == 6 and read_weights_file(tmp_path / "run/best.safetensors")[3]["step"] == "40"

    torch.manual_seed(cfg.train.seed)  # the trainer's initial weights
    initial = create_model("sian", channels=6, stages=2)
    release_init(initial)
    files = list_clean_images(cfg.data.train_clean)
    batch = [SyntheticPatches(files, 32, "light", False, seed=99)[i] for i in range(8)]  # unseen samples
    rainy, clean = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
    with torch.no_grad():
        before = stage_loss(initial(rainy, return_all=True), clean).item()
        after = stage_loss(trained(rainy, return_all=True), clean).item()
    assert after < before - 0.01


def test_overfitting_a_tiny_pair_set_gains_psnr(tmp_path):
    clean = make_clean_folder(tmp_path / "pairs" / "gt", count=2, size=(40, 40))
    rainy = tmp_path / "pairs" / "rainy"
    rainy.mkdir()
    rng = np.random.default_rng(1)
    for path in clean.iterdir():
        image = np.asarray(Image.open(path)).astype(float)
        streaks = np.zeros(image.shape[:2])
        streaks[:, rng.choice(40, 6, replace=False)] = 60  # bright vertical streaks
        Image.fromarray(np.clip(image + streaks[..., None], 0, 255).astype(np.uint8)).save(rainy / path.name)
    overrides = tiny_overrides(tmp_path, **{
        "data.train_clean": "[]", "data.train_pairs": f"[{tmp_path / 'pairs'}]", "data.val_clean": "[]",
        "data.val_pairs": str(tmp_path / "pairs"), "data.val_crop": 0, "data.patch_size": 40, "data.hflip": False,
        "train.steps": 80, "train.loss": "mse", "optim.lr": 3e-3, "model.variant": "prenet",
        "model.overrides": "{channels: 8, stages: 2, res_blocks: 1}",
    })  # fmt: skip
    summary = train(load_config(None, overrides), progress=False)
    final = [json.loads(r) for r in (tmp_path / "run/log.jsonl").read_text().splitlines() if "val_psnr" in r][-1]
    assert summary["best_val_psnr"] >= final["val_psnr"] > final["val_input_psnr"] + 3


def run_cli(args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "sian", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kwargs)  # fmt: skip


def test_sigterm_mid_run_then_resume_continues_exactly(tmp_path):
    settings = {"train.steps": 40, "train.checkpoint_minutes": 60}
    overrides = tiny_overrides(tmp_path, **settings)
    train(load_config(None, tiny_overrides(tmp_path, out="reference", **settings)), progress=False)

    proc = subprocess.Popen([sys.executable, "-m", "sian", "train", str(EMPTY_CONFIG), *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count("\n") >= 5):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    interrupted = torch.load(tmp_path / "run/state.pt", weights_only=True)
    stopped = interrupted["step"]
    assert 5 <= stopped < 40 and "--resume" in output
    assert not list((tmp_path / "run").glob(".*tmp")), "a temporary checkpoint file was left behind"

    refused = run_cli(["train", str(EMPTY_CONFIG), *overrides])
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = run_cli(["train", str(EMPTY_CONFIG), *overrides, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(r) for r in log.read_text().splitlines() if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, 41))  # every step once: continued, not restarted
    # The training budget adds up over resumes instead of restarting from zero.
    after = [r for r in records if r["step"] > stopped]
    assert after[0]["wall_seconds"] > interrupted["wall_seconds"] > 0
    assert after[0]["cpu_seconds"] > interrupted["cpu_seconds"] > 0
    ours, theirs = (read_weights_file(tmp_path / d / "last.safetensors")[2] for d in ("run", "reference"))
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)


def train_two_processes(overrides: list[str]) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 -m sian train` of the empty config with ``overrides`` (gloo, CPU)."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sian", "train",
         str(EMPTY_CONFIG), *overrides],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_two_process_ddp_equals_one_process_on_the_same_global_batch(tmp_path):
    # Three validation images (an uneven share: rank 0 scores two, rank 1 one) at step 2 and at the end.
    settings = {"train.steps": 4, "train.val_every": 2, "data.val_count": 3}
    overrides = tiny_overrides(tmp_path, **settings)
    train(load_config(None, tiny_overrides(tmp_path, out="single", **settings)), progress=False)
    result = train_two_processes(overrides)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_identical"] is True
    ddp, one = (read_weights_file(tmp_path / d / "last.safetensors")[2] for d in ("run", "single"))
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], rtol=1e-4, atol=1e-5)
    # Validation is shared among the processes and gives the scores one process gives, logged once.
    ddp_val, one_val = (
        [json.loads(r) for r in (tmp_path / d / "log.jsonl").read_text().splitlines() if "val_psnr" in r]
        for d in ("run", "single")
    )
    assert [r["step"] for r in ddp_val] == [r["step"] for r in one_val] == [2, 4]
    for mine, theirs in zip(ddp_val, one_val, strict=True):
        for key in ("val_psnr", "val_ssim", "val_input_psnr", "val_stage_psnr"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-4), key


_SHARED_VALIDATION = """
import json, sys
import numpy as np, torch
from sian._dist import join_group, leave_group, placement
from sian.models import create_model
from sian.training.validation import ValidationSet, validate

where = placement()
join_group(where, torch.device("cpu"))
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (20, 24 + 4 * i, 3), dtype=np.uint8) for i in range(3)]
val = ValidationSet(["a", "b", "c"], images, [np.clip(im.astype(int) - 9, 0, 255).astype(np.uint8) for im in images])
torch.manual_seed(0)
model = create_model("sian", channels=4, stages=2)
seen = []
model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[-1]))
scores = validate(model, val, torch.device("cpu"), where if sys.argv[2] == "shared" else None)
with open(f"{sys.argv[1]}/{sys.argv[2]}-{where.rank}.json", "w") as report:  # ranks share stdout
    json.dump({"widths": seen, "scores": scores}, report)
leave_group()
"""


def test_validation_is_shared_among_processes_and_scores_as_one(tmp_path):
    script = tmp_path / "shared_validation.py"
    script.write_text(_SHARED_VALIDATION)
    one = subprocess.run([sys.executable, str(script), str(tmp_path), "alone"], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert one.returncode == 0, one.stderr
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ranks = subprocess.run([*launch, str(script), str(tmp_path), "shared"], capture_output=True, text=True, timeout=300)
    assert ranks.returncode == 0, ranks.stdout + ranks.stderr
    alone = json.loads((tmp_path / "alone-0.json").read_text())
    reports = [json.loads((tmp_path / f"shared-{rank}.json").read_text()) for rank in range(2)]
    assert alone["widths"] == [24, 28, 32]
    assert [r["widths"] for r in reports] == [[24, 32], [28]]  # each image once, every world-th per process
    for report in reports:  # every process gets the one-process result
        for key, value in alone["scores"].items():
            assert report["scores"][key] == pytest.approx(value, abs=1e-6), key


def test_model_init_fine_tunes_from_a_weights_file(tmp_path):
    from sian.weights import save_weights

    start = create_model("sian", channels=6, stages=2)
    init = save_weights(tmp_path / "init.safetensors", start, "sian", start.config)
    cfg = load_config(EMPTY_CONFIG, tiny_overrides(tmp_path, **{"model.init": str(init), "optim.lr": 0.0,
                                                                "train.steps": 2}))  # fmt: skip
    train(cfg, progress=False)
    trained = read_weights_file(tmp_path / "run" / "last.safetensors")[2]
    for key, value in start.state_dict().items():  # lr 0: still exactly the initial weights
        torch.testing.assert_close(trained[key], value, rtol=0, atol=0)
    # The log names the exact file the run started from: a name's file can be replaced later.
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert first["init"] == str(init) and first["init_sha256"] == sha256_file(init)
    wrong = create_model("sian", channels=4, stages=2)
    bad = save_weights(tmp_path / "wrong.safetensors", wrong, "sian", wrong.config)
    with pytest.raises(Exception, match=r"model\.init weights"):
        train(
            load_config(EMPTY_CONFIG, tiny_overrides(tmp_path, out="run2", **{"model.init": str(bad)})), progress=False
        )


# --- faults ---------------------------------------------------------------------------------


def _initial_weights(seed=0):
    torch.manual_seed(seed)
    model = create_model("sian", channels=6, stages=2)
    release_init(model)
    return model.state_dict()


def _nan_loss_at(monkeypatch, bad_steps, kind="loss"):
    from sian.training import trainer

    calls = {"n": 0}

    def patched(outputs, clean, loss="ssim"):
        calls["n"] += 1
        value = stage_loss(outputs, clean, loss)
        if calls["n"] in bad_steps:
            if kind == "loss":
                return value * float("nan")
            # finite loss, NaN gradient: d sqrt(x)/dx is inf at 0
            return value + torch.sqrt(outputs[-1].sum() * 0.0)
        return value

    monkeypatch.setattr(trainer, "stage_loss", patched)


def _log(tmp_path, out="run"):
    return [json.loads(line) for line in (tmp_path / out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_nonfinite_steps_are_skipped_and_never_reach_the_weights(tmp_path, monkeypatch, kind):
    _nan_loss_at(monkeypatch, bad_steps=set(range(1, 100)), kind=kind)  # every step is bad
    summary = train(load_config(EMPTY_CONFIG, tiny_overrides(tmp_path, **{"train.steps": 4})), progress=False)
    assert summary["skipped_steps"] == 4
    assert [r["nonfinite"] for r in _log(tmp_path) if "nonfinite" in r] == [kind] * 4
    trained = read_weights_file(tmp_path / "run" / "last.safetensors")[2]
    for key, value in _initial_weights().items():  # not one update was applied
        torch.testing.assert_close(trained[key], value, rtol=0, atol=0)


def test_nonfinite_rollback_restores_the_last_checkpointed_weights(tmp_path, monkeypatch):
    _nan_loss_at(monkeypatch, bad_steps={4}, kind="gradient")
    settings = {"train.steps": 4, "train.nonfinite": "rollback", "train.checkpoint_minutes": 60}
    train(load_config(EMPTY_CONFIG, tiny_overrides(tmp_path, **settings)), progress=False)
    assert [r["policy"] for r in _log(tmp_path) if "nonfinite" in r] == ["rollback"]
    trained = read_weights_file(tmp_path / "run" / "last.safetensors")[2]
    for key, value in _initial_weights().items():  # steps 1-3 were undone: no checkpoint since the start
        torch.testing.assert_close(trained[key], value, rtol=0, atol=0)


def test_nonfinite_stop_policy_and_the_limit_in_a_row(tmp_path, monkeypatch):
    from sian.training.trainer import NonFiniteLossError

    _nan_loss_at(monkeypatch, bad_steps={2, 3, 4, 5, 6})
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 2"):
        train(load_config(EMPTY_CONFIG, tiny_overrides(tmp_path, **{"train.nonfinite": "stop"})), progress=False)
    _nan_loss_at(monkeypatch, bad_steps={2, 3, 4, 5, 6})
    with pytest.raises(NonFiniteLossError, match="3 in a row"):
        train(load_config(EMPTY_CONFIG, tiny_overrides(tmp_path, out="b", **{"train.max_nonfinite": 2})),
              progress=False)  # fmt: skip


def test_a_full_disk_while_checkpointing_is_reported_and_the_previous_checkpoint_survives(tmp_path, monkeypatch):
    import errno

    from sian.training import trainer
    from sian.training.trainer import CheckpointError

    real_save, saves = trainer.save_state, {"n": 0}

    def disk_fills_up(out_dir, state):
        saves["n"] += 1
        if saves["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(out_dir, state)

    monkeypatch.setattr(trainer, "save_state", disk_fills_up)
    settings = {"train.steps": 5, "train.checkpoint_minutes": 0}  # a checkpoint after every step
    with pytest.raises(CheckpointError, match="No space left on device"):
        train(load_config(EMPTY_CONFIG, tiny_overrides(tmp_path, **settings)), progress=False)
    errors = [r for r in _log(tmp_path) if "checkpoint_error" in r]
    assert [r["step"] for r in errors] == [2, 3, 4, 5, 5]  # reported at every try, training went on
    assert [r["step"] for r in _log(tmp_path) if "loss" in r] == [1, 2, 3, 4, 5]
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["step"] == 1  # the last good checkpoint, intact
    assert not list((tmp_path / "run").glob(".*tmp*"))


def test_sigkill_at_a_random_moment_loses_at_most_one_interval_and_resumes(tmp_path):
    interval_s = 1.0
    overrides = tiny_overrides(tmp_path, **{"train.steps": 400, "train.checkpoint_minutes": interval_s / 60})
    proc = subprocess.Popen([sys.executable, "-m", "sian", "train", str(EMPTY_CONFIG), *overrides],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "run" / "state.pt").exists():
        time.sleep(0.05)
    time.sleep(np.random.default_rng(11).uniform(0.5, 3.0))  # an arbitrary (fixed) moment, possibly mid-checkpoint
    proc.kill()
    proc.wait(timeout=60)
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)  # never corrupt
    last_logged = max(r["wall_seconds"] for r in _log(tmp_path) if "loss" in r)
    # Checkpoints follow the first step after each interval: at most one interval (plus a step) is lost.
    step_time = max(r["wall_seconds"] for r in _log(tmp_path) if "loss" in r) / max(1, _log(tmp_path)[-1]["step"])
    assert last_logged - state["wall_seconds"] <= interval_s + 3 * step_time + 1.0
    more = f"train.steps={state['step'] + 2}"  # the last override wins
    resumed = run_cli(["train", str(EMPTY_CONFIG), *overrides, more, "--resume", "--allow-change", "train.steps"])
    assert resumed.returncode == 0, resumed.stderr
    assert [r["step"] for r in _log(tmp_path) if "loss" in r][-2:] == [state["step"] + 1, state["step"] + 2]
    assert not list((tmp_path / "run").glob(".*tmp*"))  # debris of a killed write is removed on restart


def make_pair_folder(folder: Path, count: int = 5, size: int = 40) -> Path:
    """A generic rain/norain pair folder like Rain100L_train: norain-N.png in both."""
    clean = make_clean_folder(folder / "norain", count=count, size=(size, size))
    (folder / "rain").mkdir()
    for i, path in enumerate(sorted(clean.iterdir())):
        path.rename(clean / f"norain-{i + 1}.png")
    for path in clean.iterdir():
        image = np.asarray(Image.open(path)).astype(float)
        image[:, ::7] += 50  # vertical streaks
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / "rain" / path.name)
    return folder


def test_val_split_holds_named_pairs_out_of_training_and_validates_on_them(tmp_path):
    from sian.training.trainer import _build_data
    from sian.training.validation import build_validation_set, validation_sources

    pairs = make_pair_folder(tmp_path / "pairs")
    split = tmp_path / "val.txt"
    split.write_text("# held out\nnorain-4\nnorain-2  # second\n")
    overrides = tiny_overrides(tmp_path, **{
        "data.train_clean": "[]", "data.val_clean": "[]", "data.train_pairs": f"[{pairs}]",
        "data.val_split": str(split), "data.val_count": 0, "data.val_crop": 0, "data.patch_size": 32,
    })  # fmt: skip
    cfg = load_config(None, overrides)
    dataset, _ = _build_data(cfg)
    assert [p.name for p in dataset.pairs] == ["norain-1", "norain-3", "norain-5"]
    val = build_validation_set(cfg.data)
    assert val.names == ["norain-4", "norain-2"]
    assert [p.name for p in validation_sources(cfg.data).pairs] == val.names and len(validation_sources(cfg.data)) == 2
    assert np.array_equal(val.clean[0], np.asarray(Image.open(pairs / "norain/norain-4.png")))
    # A typo must not let a validation pair slip back into training.
    split.write_text("norain-4\nnorain-22\n")
    with pytest.raises(ValueError, match=r"match no pair.*norain-22"):
        _build_data(cfg)
    with pytest.raises(ValueError, match="val_split"):
        load_config(None, [*overrides, f"data.val_pairs={pairs}"])


def test_the_committed_rain100l_split_names_20_training_pairs():
    from sian.training.datasets import read_pair_names

    cfg = load_config(REPO / "configs/rain100l-cpu.yaml")
    names = read_pair_names(REPO / cfg.data.val_split)
    assert len(names) == len(set(names)) == 20 and all(n.startswith("norain-") for n in names)
    assert cfg.train.steps > 0 and cfg.data.train_pairs[0].endswith("Rain100L_train")


def test_train_precision_bf16_trains_in_bf16_with_fp32_weights_and_is_logged(tmp_path, monkeypatch):
    import sian.training.trainer as trainer_module

    seen = []
    real_loss = trainer_module.stage_loss
    monkeypatch.setattr(trainer_module, "stage_loss", lambda outs, clean, kind: seen.append(outs[-1].dtype)
                        or real_loss(outs, clean, kind))  # fmt: skip
    convs = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: convs.append(out.dtype) if isinstance(module, torch.nn.Conv2d) else None
    )
    try:
        summary = train(load_config(None, tiny_overrides(tmp_path, **{"train.precision": "bf16"})), progress=False)
    finally:
        handle.remove()
    assert summary["status"] == "finished"
    assert torch.bfloat16 in convs and set(seen) == {torch.float32}  # forward in bf16, loss in fp32
    weights = read_weights_file(tmp_path / "run/last.safetensors")[2]
    assert all(t.dtype == torch.float32 for t in weights.values())
    first = json.loads((tmp_path / "run/log.jsonl").read_text().splitlines()[0])
    assert first == {"step": 0, "precision": "bf16", "precision_reason": "requested", "machine": describe_machine(),
                     "processes": 1, "threads": 1}  # fmt: skip
    with pytest.raises(ValueError, match=r"train\.precision must be one of"):
        load_config(None, tiny_overrides(tmp_path, **{"train.precision": "half"}))


def test_the_allocator_setting_changes_no_number(tmp_path):
    """sian._allocator only keeps freed memory in the process: a fixed-seed training step is bit-identical."""
    outputs = []
    for mode in ("off", "on"):
        script = tmp_path / f"{mode}.py"
        script.write_text(
            "import sys, torch\nfrom sian._allocator import keep_freed_memory\n"
            "if sys.argv[1] == 'on':\n    assert keep_freed_memory()\n"
            "from sian.models import create_model\nfrom sian.precision import resolve_precision\n"
            "from sian.training.trainer import forward_loss\n"
            "torch.set_num_threads(1); torch.manual_seed(0)\n"
            "model = create_model('sian', channels=8, stages=3).train()\n"
            "opt = torch.optim.Adam(model.parameters(), 1e-3)\n"
            "x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)\n"
            "for _ in range(2):\n"
            "    opt.zero_grad()\n"
            "    forward_loss(model, x, y, 'ssim', resolve_precision('fp32', x.device))[1].backward()\n"
            "    opt.step()\n"
            "torch.save([p.detach() for p in model.parameters()], sys.argv[2])\n"
        )
        result = subprocess.run([sys.executable, str(script), mode, str(tmp_path / f"{mode}.pt")],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs.append(torch.load(tmp_path / f"{mode}.pt"))
    assert all(torch.equal(a, b) for a, b in zip(*outputs, strict=True))


def test_resume_refuses_a_changed_config_unless_the_change_is_allowed(tmp_path):
    """--resume did not check that the config matches the saved one."""
    from sian.training.trainer import ConfigChangedError

    train(load_config(None, tiny_overrides(tmp_path, **{"train.steps": 3})), progress=False)
    changed = load_config(None, tiny_overrides(tmp_path, **{"train.steps": 5, "optim.lr": 5e-3}))
    with pytest.raises(ConfigChangedError, match=r"optim\.lr: 0\.002 -> 0\.005.*train\.steps: 3 -> 5"):
        train(changed, resume=True, progress=False)
    # How a run runs (threads, logging, precision) may change without asking; what it learns may when allowed.
    harmless = load_config(None, tiny_overrides(tmp_path, **{"train.steps": 3, "train.threads": 2}))
    assert train(harmless, resume=True, progress=False)["step"] == 3
    summary = train(changed, resume=True, progress=False, allow_changes=("optim.lr", "train.steps"))
    assert summary["status"] == "finished" and summary["step"] == 5
    result = run_cli(["train", str(EMPTY_CONFIG), *tiny_overrides(tmp_path, **{"train.steps": 6}), "--resume"])
    assert result.returncode == 2 and "--allow-change" in result.stderr and "train.steps: 5 -> 6" in result.stderr


def test_a_mixture_of_pairs_and_clean_images_trains_on_both_and_validates_on_both(tmp_path):
    """A general model learns from real pairs and synthetic rain at once, and is selected on both
    held-out sets (the named validation pairs and held-out clean images with fixed rain)."""
    from sian.training.datasets import MixedPatches
    from sian.training.trainer import _build_data
    from sian.training.validation import build_validation_set, validate

    pairs = make_pair_folder(tmp_path / "pairs")
    split = tmp_path / "val.txt"
    split.write_text("norain-2\n")
    overrides = tiny_overrides(tmp_path, **{
        "data.val_clean": "[]", "data.train_pairs": f"[{pairs}]", "data.val_split": str(split),
        "data.val_holdout": 1, "data.val_count": 0, "data.val_crop": 0, "data.pair_fraction": 0.25,
    })  # fmt: skip
    cfg = load_config(None, overrides)
    dataset, epoch = _build_data(cfg)
    assert isinstance(dataset, MixedPatches) and epoch is None
    picks = [dataset.is_pair(i) for i in range(4000)]
    assert 0.22 < np.mean(picks) < 0.28
    first_pair, first_synthetic = picks.index(True), picks.index(False)
    assert torch.equal(dataset[first_pair][0], dataset.pairs[first_pair][0])
    assert torch.equal(dataset[first_synthetic][1], dataset.synthetic[first_synthetic][1])
    assert "norain-2" not in [p.name for p in dataset.pairs.pairs] and len(dataset.synthetic.files) == 3
    val = build_validation_set(cfg.data)
    assert val.groups == ["pairs", "synthetic"] and val.names[0] == "norain-2"
    assert val.names[1] not in {p.stem for p in dataset.synthetic.files}
    torch.manual_seed(0)
    scores = validate(create_model("sian", channels=4, stages=2), val, torch.device("cpu"))
    assert scores["val_psnr"] == pytest.approx((scores["val_psnr_pairs"] + scores["val_psnr_synthetic"]) / 2)
    with pytest.raises(ValueError, match="pair_fraction"):
        load_config(None, [*overrides, "data.pair_fraction=1.0"])
    with pytest.raises(ValueError, match="patch_stride"):
        load_config(None, [*overrides, "data.patch_stride=16"])


@pytest.mark.shared
@pytest.mark.parametrize("name", ["sian-general", "sian-streaks-heavy"])
def test_the_fine_tune_configs_keep_every_validation_background_out_of_training(name, monkeypatch):
    """The general and heavy models train on BSDS500 photos; the backgrounds of the 20 validation pairs
    are BSDS500 images too, and must not be trained on (configs/splits/rain100l-train-val20-bsds500.tsv)."""
    from conftest import shared_path
    from sian.training.trainer import _build_data
    from sian.training.validation import build_validation_set, validation_sources

    for needed in ("BSDS500", "Kodak24", "McMaster18", "streaks_garg_nayar", "Rain100L_train"):
        shared_path("data", needed)  # skips, with the reason, when a part of ../shared is missing
    monkeypatch.setenv("SIAN_SHARED", str(shared_path()))
    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    dataset, _ = _build_data(cfg)
    synthetic = getattr(dataset, "synthetic", dataset)
    trained = {path.stem for path in synthetic.files}
    backgrounds = [line.split("\t")[1] for line in (REPO / "configs/splits/rain100l-train-val20-bsds500.tsv")
                   .read_text().splitlines()[3:]]  # fmt: skip
    assert len(backgrounds) == 20 and not trained & {Path(b).stem for b in backgrounds}
    assert len(trained) > 400
    val = build_validation_set(cfg.data)
    assert set(val.names) & trained == set() and len(validation_sources(cfg.data)) == len(val)
    # Both select on the 20 held-out Rain100L pairs plus 20 held-out streak-rain images (the heavy model
    # too, since it must not damage light rain), and neither trains on those pairs.
    assert val.groups.count("synthetic") == 20 and val.groups.count("pairs") == 20
    assert {pair.name for pair in dataset.pairs.pairs}.isdisjoint(val.names)


@pytest.mark.shared
def test_the_heavy_rain_test_photos_are_never_trained_on_nor_validated(monkeypatch):
    """benchmarks/heavy_rain_test.py derains the BSDS500 photos that are Rain100L/H test backgrounds: no training
    config of ours trains on them or validates on them."""
    from conftest import shared_path
    from sian.training.datasets import read_exclusions
    from sian.training.trainer import _build_data
    from sian.training.validation import build_validation_set

    for needed in ("BSDS500", "Kodak24", "McMaster18", "streaks_garg_nayar", "Rain100L_train", "RainTrainH_12"):
        shared_path("data", needed)
    monkeypatch.setenv("SIAN_SHARED", str(shared_path()))
    monkeypatch.chdir(REPO)
    overlap = read_exclusions([str(shared_path("data", "BSDS500", "OVERLAP_with_Rain100LH_test_backgrounds.tsv"))])
    photos = {p.stem for p in shared_path("data", "BSDS500").rglob("*.jpg") if p.stem in overlap}
    assert len(photos) > 60
    for name in ("sian-general", "sian-streaks-heavy", "sian-raintrainh"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        dataset, _ = _build_data(cfg)
        assert photos.isdisjoint(path.stem for path in dataset.synthetic.files), name
        assert photos.isdisjoint(build_validation_set(cfg.data).names), name


def test_the_stopping_rule_ends_a_run_and_a_resume_trains_no_further(tmp_path):
    """train.stop (the Rain100L run's rule, once applied by hand) is judged after every validation and at a resume."""
    rule = {"train.steps": 8, "train.val_every": 2, "train.stop": "{window_hours: 1e-9, min_gain: 100}"}
    config = load_config(None, tiny_overrides(tmp_path, **rule))
    summary = train(config, progress=False)  # step 2: no window behind it yet; step 4: gained < 100 dB
    assert summary["status"] == "stopped" and summary["step"] == 4
    assert (tmp_path / "run/STOPPED").read_text().startswith("stop: less than 100 dB gained")
    assert "step 4" in summary["stop_reason"] and read_weights_file(tmp_path / "run/last.safetensors")[3]["step"] == "4"
    assert [r["step"] for r in _log(tmp_path) if "stopped" in r] == [4]
    again = train(config, resume=True, progress=False)
    assert again["status"] == "stopped" and again["step"] == 4
    # The rule is a resumable change: without it the run goes on to its end.
    off = load_config(None, tiny_overrides(tmp_path, **{**rule, "train.stop": "{min_gain: 0}"}))
    finished = train(off, resume=True, progress=False)
    assert finished["status"] == "finished" and finished["step"] == 8


def test_resuming_a_finished_run_does_not_score_its_last_step_again(tmp_path):
    """Bug: `--resume` of a finished run (scripts resume every run they need) validated its last step again, a
    whole validation set's time for a duplicate log record. An interrupted final validation still runs."""
    config = load_config(None, tiny_overrides(tmp_path, **{"train.steps": 4, "train.val_every": 2}))
    assert train(config, progress=False)["status"] == "finished"
    scored = [r["step"] for r in _log(tmp_path) if "val_psnr" in r]
    assert scored == [2, 4]
    again = train(config, resume=True, progress=False)
    assert again["status"] == "finished" and again["step"] == 4
    assert [r["step"] for r in _log(tmp_path) if "val_psnr" in r] == scored
    # A checkpoint from before the final validation (or from older code, without the record) is scored.
    state = torch.load(tmp_path / "run/state.pt", weights_only=True)
    del state["validated"]
    torch.save(state, tmp_path / "run/state.pt")
    train(config, resume=True, progress=False)
    assert [r["step"] for r in _log(tmp_path) if "val_psnr" in r] == [2, 4, 4]


def test_the_stopping_rule_stops_every_process_of_a_torchrun_job_together(tmp_path):
    """Rank 0 reads the log and decides; a rank that kept training alone would hang the job."""
    overrides = tiny_overrides(tmp_path, **{"train.steps": 8, "train.val_every": 2,
                                            "train.stop": "{window_hours: 1e-9, min_gain: 100}"})  # fmt: skip
    result = train_two_processes(overrides)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["status"] == "stopped" and summary["step"] == 4 and summary["ranks_identical"] is True
    assert "stop: less than 100 dB gained" in result.stdout and "STOPPED" in result.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator and getrusage page-fault counts")
def test_large_blocks_are_reused_instead_of_faulted_in_again(tmp_path):
    """Bug: blocks above glibc's largest mmap threshold (32 MB; a 768x768 tile's 32-channel maps are 75 MB) came
    from a fresh mmap every time, so the kernel zeroed them again on every forward. With the allocator setting a
    freed 80 MB block is reused: once the heap has grown, writing new ones faults in almost no pages."""
    script = tmp_path / "faults.py"
    script.write_text(
        "import resource, sys, torch\nfrom sian._allocator import keep_freed_memory\n"
        "if sys.argv[1] == 'on':\n    assert keep_freed_memory()\n"
        "def faults():\n    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(3):  # warm-up, as a first forward: the heap grows to hold the block\n"
        "    torch.empty(20_000_000).fill_(1.0)  # 80 MB, freed at once\n"
        "before = faults()\nfor _ in range(3):\n    torch.empty(20_000_000).fill_(2.0)\nprint(faults() - before)\n"
    )
    faults = {}
    for mode in ("off", "on"):
        result = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        faults[mode] = int(result.stdout.split()[-1])
    assert faults["off"] > 45_000  # three times 80 MB of 4 kB pages, faulted in afresh (the old setting: the same)
    assert faults["on"] < 3_000, faults


def test_ema_weights_are_what_is_validated_written_and_resumed_exactly(tmp_path):
    """train.ema_decay: last/best.safetensors hold the moving average (not the raw weights), which follows
    ema = decay * ema + (1 - decay) * weights after every update, and a resume restores it exactly."""
    settings = {"train.steps": 6, "train.ema_decay": 0.9, "train.val_every": 0}  # validated once, at the end
    train(load_config(None, tiny_overrides(tmp_path, out="reference", **settings)), progress=False)
    # The same run in two sessions: 3 steps, then resumed to 6.
    first = tiny_overrides(tmp_path, out="split", **{**settings, "train.steps": 3})
    train(load_config(None, first), progress=False)
    resumed = tiny_overrides(tmp_path, out="split", **settings)
    train(load_config(None, resumed), resume=True, progress=False, allow_changes=("train.steps",))
    ours, theirs = (read_weights_file(tmp_path / d / "last.safetensors")[2] for d in ("split", "reference"))
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)
    # The average, not the weights: the state keeps both, and they differ.
    state = torch.load(tmp_path / "reference/state.pt", weights_only=True)
    raw, averaged = state["model"], {k.removeprefix("module."): v for k, v in state["ema"].items()}
    name = next(k for k in theirs if k.endswith("weight"))
    assert torch.equal(theirs[name], averaged[name]) and not torch.equal(theirs[name], raw[name])
    # best.safetensors (the one validation, at the end) is the average too.
    best = read_weights_file(tmp_path / "reference/best.safetensors")[2]
    assert all(torch.equal(best[key], averaged[key]) for key in best)
    with pytest.raises(ValueError, match="ema_decay"):
        train(load_config(None, tiny_overrides(tmp_path, out="bad", **{"train.ema_decay": 1.0})), progress=False)


def test_ema_follows_its_formula():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    net = torch.nn.Linear(2, 1)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    ema.update_parameters(net)  # the first update copies the weights
    before = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update_parameters(net)
    torch.testing.assert_close(ema.module.weight, 0.9 * before + 0.1 * net.weight.detach())


def test_two_process_ddp_averages_the_same_weights_as_one_process(tmp_path):
    settings = {"train.steps": 4, "train.ema_decay": 0.8}
    train(load_config(None, tiny_overrides(tmp_path, out="single", **settings)), progress=False)
    result = train_two_processes(tiny_overrides(tmp_path, **settings))
    assert result.returncode == 0, result.stdout + result.stderr
    ddp, one = (read_weights_file(tmp_path / d / "last.safetensors")[2] for d in ("run", "single"))
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], rtol=1e-4, atol=1e-5)


def test_a_second_run_starts_from_another_runs_weights_and_moments_with_a_fresh_schedule(tmp_path):
    from sian.training.trainer import Trainer

    train(load_config(None, tiny_overrides(tmp_path, out="first", **{"train.steps": 4})), progress=False)
    first = torch.load(tmp_path / "first/state.pt", weights_only=True)
    state_file = tmp_path / "first/state.pt"
    second = load_config(None, tiny_overrides(tmp_path, out="second", **{
        "model.init": str(state_file), "optim.lr": 3e-4, "optim.schedule": "cosine", "optim.warmup_steps": 2,
    }))  # fmt: skip
    trainer = Trainer(second, progress=False)
    try:
        assert trainer.progress.step == 0 and trainer.scheduler.last_epoch == 0
        for key, value in first["model"].items():
            assert torch.equal(trainer.model.state_dict()[key], value), key
        moments = trainer.optimizer.state_dict()["state"]
        assert all(torch.equal(moments[i]["exp_avg"], first["optimizer"]["state"][i]["exp_avg"]) for i in moments)
        group = trainer.optimizer.param_groups[0]
        assert group["initial_lr"] == 3e-4 and group["lr"] == pytest.approx(3e-4 / 2)  # warm-up step 0 of 2
    finally:
        trainer.close()
    record = json.loads((tmp_path / "second/log.jsonl").read_text().splitlines()[0])
    assert record["init_step"] == 4 and record["init_sha256"] == sha256_file(state_file)
    with pytest.raises(FileNotFoundError, match="no run state"):
        Trainer(load_config(None, tiny_overrides(tmp_path, out="third", **{"model.init": str(tmp_path / "x.pt")})))
