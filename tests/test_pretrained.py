"""Our own shipped weights and the bundled example: present, intact, loadable, and used by default offline."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import sian
from sian.cli import app
from sian.convert import import_weights
from sian.demo import ASSETS_DIR, load_example
from sian.hub import PRETRAINED_DIR, WEIGHTS, load_model, weights_dir
from sian.inference import DEFAULT_MODEL
from sian.io import to_tensor
from sian.metrics import psnr_y, quantize
from sian.models import list_models
from sian.synth import is_preset, synthesize
from sian.weights import WeightsError, sha256_file

BUNDLED = sorted(name for name, entry in WEIGHTS.items() if entry.bundled)


def test_the_default_model_ships_with_the_package():
    assert DEFAULT_MODEL in BUNDLED
    manifest = json.loads((PRETRAINED_DIR / "manifest.json").read_text())
    assert sorted(manifest) == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_are_intact_documented_and_derain(name):
    entry = WEIGHTS[name]
    path = PRETRAINED_DIR / entry.filename
    assert sha256_file(path) == entry.sha256 and entry.variant in list_models()
    assert path.stat().st_size < 8 * 1024**2  # "a few MB"
    card = (PRETRAINED_DIR / f"{name}.md").read_text()
    assert card.startswith(f"# {name}") and "CPU-hours" in card and "Rain100L" in card
    model = load_model(name)
    rainy, clean = load_example()
    crop = (slice(200, 328), slice(100, 228))
    rainy, clean = rainy[crop], clean[crop]
    preset = json.loads((PRETRAINED_DIR / "manifest.json").read_text())[name]["preset"]
    # The bundled example has light rain, the kind the light model is for and so are the models trained on real
    # pairs (presets of training runs, not of sian.synth: rain100l, general); the others get their own rain.
    if preset != "light" and is_preset(preset):
        rainy = quantize(synthesize(to_tensor(clean)[0], preset, seed=0)[0])
    out = sian.derain(rainy, model=model)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    # A trained derainer, not noise: it must not make its kind of rain worse.
    assert psnr_y(out, clean) > psnr_y(rainy, clean) + 1.0


def test_damaged_bundled_weights_are_refused(monkeypatch, tmp_path):
    name = DEFAULT_MODEL
    damaged = tmp_path / WEIGHTS[name].filename
    data = bytearray((PRETRAINED_DIR / WEIGHTS[name].filename).read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr("sian.hub.PRETRAINED_DIR", tmp_path)
    with pytest.raises(WeightsError, match="damaged"):
        load_model(name)


def test_bundled_names_cannot_be_overwritten_by_an_import(tmp_path):
    with pytest.raises(WeightsError, match="ships with the package"):
        import_weights(__file__, DEFAULT_MODEL)


def test_bundled_example_and_its_credit():
    rainy, clean = load_example()
    assert rainy.shape == clean.shape == (500, 500, 3) and not np.array_equal(rainy, clean)
    credit = (ASSETS_DIR / "CREDITS.md").read_text()
    assert "Kodak" in credit and "unrestricted" in credit
    assert json.loads((ASSETS_DIR / "kodim16_rain.json").read_text())["preset"] == "light"


@pytest.mark.slow
def test_demo_runs_offline_prints_psnr_and_keeps_existing_results(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAN_SHARED", str(tmp_path / "no-shared"))  # no ../shared
    # The authors' weights live in SIAN_HOME's weights folder: the autouse fixture makes it a new, empty one.
    assert not weights_dir().exists() or not any(weights_dir().iterdir())
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    output = tmp_path / "out" / "kodim16_derained.png"
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line.strip()}
    assert float(lines["output"][0]) > float(lines["input"][0]), result.output
    before = output.read_bytes()
    again = runner.invoke(app, ["demo", "-o", str(tmp_path / "out")])
    assert again.exit_code == 2 and "--overwrite" in again.output and output.read_bytes() == before


@pytest.mark.slow
def test_demo_runs_auto_by_default_says_what_ran_and_takes_a_precision(tmp_path):
    """`auto` is demo's default as derain's; the demo did not say which precision ran, nor take one."""
    runner = CliRunner()
    default = runner.invoke(app, ["demo", "-o", str(tmp_path / "a")])
    assert default.exit_code == 0 and "(cpu, " in default.output and "(auto: " in default.output, default.output
    fp32 = runner.invoke(app, ["demo", "-o", str(tmp_path / "b"), "--precision", "fp32"])
    assert fp32.exit_code == 0 and "(cpu, fp32 (requested)" in fp32.output, fp32.output
    fp16 = runner.invoke(app, ["demo", "-o", str(tmp_path / "c"), "--precision", "fp16"])
    assert fp16.exit_code == 2 and "fp16 needs a CUDA device" in fp16.output


def test_derain_does_not_modify_the_callers_module():
    # Regression: derain(model=module) used to switch the caller's module to channels_last and eval().
    model = sian.create_model("sian", channels=4, stages=2).train()
    before = {k: (v.clone(), v.is_contiguous()) for k, v in model.state_dict().items()}
    sian.derain(np.zeros((20, 24, 3), np.uint8), model=model)
    assert model.training
    for key, (value, contiguous) in before.items():
        after = model.state_dict()[key]
        assert torch.equal(after, value) and after.is_contiguous() == contiguous, key
