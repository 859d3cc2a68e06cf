"""tools/ship_weights.py writes a shipped model's weights, manifest entry and model card from its run."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sian.models.registry import create_model, get_variant
from sian.training import load_config
from sian.training.config import to_dict
from sian.weights import read_weights_file, save_weights, sha256_file, tensors_sha256

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # the tool imports its neighbours, as when it runs
spec = importlib.util.spec_from_file_location("ship_weights", REPO / "tools" / "ship_weights.py")
ship = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ship)

CPU = "AMD EPYC, 2 cores (avx2), torch 2.13.0+cpu"
GPU = "NVIDIA H200, torch 2.11.0+cu130"


def fake_run(root: Path, preset: str) -> Path:
    """A finished run of ``preset``'s config: its saved config, a log with a CPU and a GPU segment, weights."""
    config_file = ship.config_path(preset)
    (root / "configs" / "splits").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "configs/splits/rain100l-train-val20.txt", root / "configs/splits")
    run = root / "checkpoints" / ship.RUN_NAMES[preset]
    run.mkdir(parents=True)
    config = load_config(REPO / config_file, ["data.train_pairs=[x]", "data.train_clean=[y]"])
    OmegaConf.save(OmegaConf.create(to_dict(config)), run / "config.yaml")
    val = {"val_psnr": 36.5, "val_ssim": 0.97, "val_input_psnr": 24.0, "val_psnr_pairs": 37.0,
           "val_psnr_synthetic": 36.0}  # fmt: skip
    records = [
        {"step": 0, "precision": "fp32", "machine": CPU, "init_sha256": "ab" * 32, "init_step": 30000},
        {"step": 500, "loss": -5.0, "wall_seconds": 1800.0, "cpu_seconds": 3500.0},
        {"step": 500, **val, "wall_seconds": 1800.0, "cpu_seconds": 3600.0},
        {"step": 500, "precision": "fp32", "machine": GPU},
        {"step": 2500, "loss": -5.5, "wall_seconds": 1920.0, "cpu_seconds": 3700.0},
        {"step": 2500, **val, "val_psnr": 37.0, "wall_seconds": 1920.0, "cpu_seconds": 3710.0},
    ]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    variant = get_variant("sian")
    save_weights(run / "best.safetensors", create_model("sian"), variant.arch, variant.config, step="2500")
    return run


def ship_run(
    root: Path,
    monkeypatch,
    preset: str,
    results: tuple[Path, ...] = (),
    heavy_test: Path | None = None,
    validation: Path | None = None,
) -> str:
    """Run the script on the fake run of ``preset`` under ``root`` with these results CSVs; the card it writes."""
    pretrained = root / "pretrained"
    pretrained.mkdir()
    monkeypatch.setattr(ship, "REPO", root)
    monkeypatch.setattr(ship, "PRETRAINED", pretrained)
    monkeypatch.setattr(ship, "RESULTS", results)
    monkeypatch.setattr(ship, "HEAVY_TEST", heavy_test or root / "absent.csv")
    monkeypatch.setattr(ship, "VALIDATION", validation or root / "absent.csv")
    monkeypatch.setattr(sys, "argv", ["ship_weights.py", preset])
    ship.main()
    return (pretrained / f"{ship.RUN_NAMES[preset]}.md").read_text()


@pytest.mark.parametrize("preset", ["rain100l", "general", "streaks-heavy"])
def test_a_run_ships_with_its_card(preset, tmp_path, monkeypatch):
    fake_run(tmp_path, preset)
    card = ship_run(tmp_path, monkeypatch, preset)
    name = ship.RUN_NAMES[preset]
    pretrained = tmp_path / "pretrained"
    _, _, state, metadata = read_weights_file(pretrained / f"{name}.safetensors")
    assert metadata["step"] == "2500" and metadata["name"] == name
    assert state.keys() == create_model("sian").state_dict().keys()
    assert json.loads((pretrained / "manifest.json").read_text())[name]["step"] == 2500
    assert card.startswith(f"# {name}\n") and "step 2500 of" in card
    assert "Rain100L test: not measured for this file yet" in card
    # 500 CPU steps in 0.5 h, then 2000 GPU steps: 2.5 CPU-equivalent hours to the selected checkpoint.
    assert "Budget to this checkpoint: 2.50 machine-hours" in card and GPU in card
    assert f"Config `{Path(ship.config_path(preset)).name}`" in card
    assert not any(path in card for path in ("checkpoints/", "scripts/", "configs/", "docs/"))  # ships in the wheel
    if preset != "rain100l":
        assert "pairs 37.00 dB, synthetic 36.00 dB" in card and "20 held-out pairs" in card
    assert ("Held-out heavy rain: not measured for this file yet" in card) == (preset == "streaks-heavy")
    replaced = {"general": "sian-synth-light", "streaks-heavy": "sian-synth-heavy"}.get(preset)
    assert ("## What changed" in card) == bool(replaced)
    if replaced:
        assert f"Replaces `{replaced}`" in card and "Not yet scored beside it" in card
        assert f"`--model {replaced}`" in card


def test_the_heavy_card_gives_the_held_out_heavy_rain_gain_of_its_checkpoint(tmp_path, monkeypatch):
    """Issue 15's heavy acceptance figure (benchmarks/heavy_rain_test.py scores the run's checkpoint before it
    ships) reaches the card, found by the tensors' hash."""
    run = fake_run(tmp_path, "streaks-heavy")
    best = read_weights_file(run / "best.safetensors")[2]
    heavy = tmp_path / "heavy-rain-test.csv"
    heavy.write_text(
        "model,sha256,tensors_sha256,images,input_psnr,psnr,gain,ssim,date,machine\n"
        f"checkpoints/sian-streaks-heavy/best.safetensors,{sha256_file(run / 'best.safetensors')},"
        f"{tensors_sha256(best)},37,17.5012,29.0034,11.5022,0.9001,2026-11-27,a CPU\n"
        "sian-synth-heavy,other,other,37,17.5012,18.0,0.4988,0.8,2026-11-27,a CPU\n"
    )
    card = ship_run(tmp_path, monkeypatch, "streaks-heavy", heavy_test=heavy)
    assert "(37 photos" in card and "**17.50 -> 29.00 dB (+11.50)**" in card and "2026-11-27 (a CPU)" in card


def test_the_card_says_what_it_replaced_with_both_scores_on_the_same_validation_set(tmp_path, monkeypatch):
    """Issue 15: "the model cards say what changed". Rows of other sizes (a quick look) or sets do not count."""
    run = fake_run(tmp_path, "streaks-heavy")
    best = read_weights_file(run / "best.safetensors")[2]
    heavy = "configs/sian-streaks-heavy.yaml"
    validation = tmp_path / "validation.csv"
    validation.write_text(
        "config,model,sha256,tensors_sha256,images,psnr\n"
        f"{heavy},sian-synth-heavy,old,old-tensors,40,20.0912\n"
        f"{heavy},sian-synth-heavy,old,old-tensors,4,99.0\n"
        f"configs/sian-general.yaml,checkpoints/sian-streaks-heavy/best.safetensors,x,{tensors_sha256(best)},40,88.0\n"
        f"{heavy},checkpoints/sian-streaks-heavy/best.safetensors,x,{tensors_sha256(best)},40,33.1150\n"
    )
    card = ship_run(tmp_path, monkeypatch, "streaks-heavy", validation=validation)
    assert "Replaces `sian-synth-heavy`" in card
    assert "this model scores 33.12 dB, `sian-synth-heavy` 20.09" in card


def test_a_score_of_the_runs_checkpoint_reaches_the_shipped_card(tmp_path, monkeypatch):
    """The results page scores the run's best.safetensors before it ships; the shipped copy holds the same
    tensors under other metadata (another file hash), and its card must still find that score."""
    run = fake_run(tmp_path, "rain100l")
    (run / "STOPPED").write_text("stop: less than 0.05 dB gained over the last 3 machine-hours (step 2500)\n")
    best = read_weights_file(run / "best.safetensors")[2]
    results = tmp_path / "rain100l-models.csv"
    results.write_text(
        "model,sha256,tensors_sha256,images,psnr,ssim,input_psnr,input_ssim,date,machine\n"
        f"sian-rain100l-ours,{sha256_file(run / 'best.safetensors')},{tensors_sha256(best)},100,37.5123,0.9801,"
        "26.9007,0.8384,2026-11-26,a CPU\n"
    )
    card = ship_run(tmp_path, monkeypatch, "rain100l", results=(results,))
    pretrained = tmp_path / "pretrained"
    shipped = pretrained / "sian-rain100l-ours.safetensors"
    assert sha256_file(shipped) != sha256_file(run / "best.safetensors")
    assert "**37.51 dB / 0.9801**" in card
    assert "stop after at least 12 machine-hours" in card and "ended: stop: less than 0.05 dB gained" in card
    assert json.loads((pretrained / "manifest.json").read_text())["sian-rain100l-ours"]["reference"] == "37.51 / 0.980"


def test_a_card_names_the_default_model_from_the_package_not_a_fixed_name(monkeypatch):
    monkeypatch.setattr(ship, "DEFAULT_MODEL", "sian-general")
    assert ship.how_to_use("sian-general", "rain") == "`sian derain` uses it by default (for rain)"
    assert "(the default model is `sian-general`)" in ship.how_to_use("sian-synth-light", "light rain")
