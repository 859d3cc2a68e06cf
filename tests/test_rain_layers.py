"""Rain100H's rain from RainTrainH pairs (sian.synth.layers), and the training options its fine-tune uses:
folder-qualified pair names, per-folder pair weights, validation groups that select, training-only exclusions."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import RAINTRAINH_NAMES, REPO, write_raintrainh_like
from sian.cli import app
from sian.io import read_image, to_tensor
from sian.metrics import quantize
from sian.synth import sample_rain_params, synthesize
from sian.synth.layers import LayerPlacement, PairLayerRain, add_layer_rain, held_out_pairs, layer_pairs
from sian.training import load_config
from sian.training.datasets import PairedPatches, pairs_of, read_pair_names


def test_a_layer_placed_over_its_own_background_gives_back_the_rainy_image_exactly(rain_layers):
    for name in RAINTRAINH_NAMES:
        clean = read_image(rain_layers / "norain" / f"{name}.png")
        identity = PairLayerRain((LayerPlacement(name, 0.0, 0.0, 1.0, False, 1.0),))
        rainy, rain = add_layer_rain(to_tensor(clean)[0], identity)
        assert np.array_equal(quantize(rainy), read_image(rain_layers / "rain" / f"{name}.png")), name
        assert rain.shape == (1, *clean.shape[:2])


def test_composites_add_gray_rain_and_keep_saturated_streak_cores_saturated(rain_layers):
    clean = torch.full((3, 30, 44), 0.1)
    clean[1] = 0.3  # channels differ: a gray layer raises all three by the same amount, where none clips
    for seed in range(10):
        rainy, params = synthesize(clean, "raintrainh", seed)
        rain = rainy - clean
        assert (rain >= -1e-6).all() and rainy.max() <= 1
        unclipped = (rainy < 1).all(dim=0)
        assert torch.allclose(rain[0][unclipped], rain[1][unclipped], atol=1e-6)
        assert torch.allclose(rain[0][unclipped], rain[2][unclipped], atol=1e-6)
        assert rain.amax() > 0.3 and 1 <= len(params.layers) <= 2
    # A pair whose streaks clipped every channel of a bright background: those cores stay white on a dark photo.
    pair = RAINTRAINH_NAMES[-1]
    source = read_image(rain_layers / "rain" / f"{pair}.png")
    background = read_image(rain_layers / "norain" / f"{pair}.png")
    # All three channels clipped, and even the lower bound of the rain there is bright: a streak core.
    cores = (source >= 255).all(axis=-1) & (255 - background.min(axis=-1).astype(int) >= 128)
    assert cores.any()
    dark = torch.zeros(3, *source.shape[:2])
    rainy, _ = add_layer_rain(dark, PairLayerRain((LayerPlacement(pair, 0.0, 0.0, 1.0, False, 1.0),)))
    assert (rainy[:, torch.from_numpy(cores)] == 1).all()


def test_training_rain_never_uses_a_held_out_pair_and_validation_rain_only_those(rain_layers):
    reserved = held_out_pairs()
    assert reserved == {"norain-9", "norain-13", "norain-12"}
    assert set(layer_pairs()) == set(RAINTRAINH_NAMES) - reserved
    trained, validated = set(), set()
    for seed in range(200):
        for preset in ("raintrainh", "raintrainh+light"):
            params = sample_rain_params(preset, np.random.default_rng(seed))
            trained |= {layer.pair for layer in getattr(params, "layers", ()) if hasattr(layer, "pair")}
        held = sample_rain_params("raintrainh", np.random.default_rng(seed), held_out=True)
        validated |= {layer.pair for layer in held.layers}
    assert trained == set(RAINTRAINH_NAMES) - reserved and validated == reserved


def test_a_missing_pair_folder_is_one_clear_line(monkeypatch, tmp_path):
    from sian.synth import layers

    monkeypatch.setenv("SIAN_RAINTRAINH", str(tmp_path / "nowhere"))
    layers._pairs.cache_clear()
    with pytest.raises(FileNotFoundError, match="SIAN_RAINTRAINH"):
        synthesize(torch.rand(3, 16, 16), "raintrainh", 0)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "photo.png")
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"),
                                      "--preset", "raintrainh"])  # fmt: skip
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error" in line]
    assert len(errors) == 1 and "SIAN_RAINTRAINH" in errors[0] and "Traceback" not in result.output
    layers._pairs.cache_clear()


def test_sian_synth_writes_raintrainh_pairs(rain_layers, tmp_path):
    Image.fromarray(np.full((32, 40, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"),
                                      "--preset", "raintrainh"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rainy = read_image(tmp_path / "out" / "rainy" / "photo.png")
    assert rainy.shape == (32, 40, 3) and (rainy >= 90).all() and (rainy > 90).any()
    assert '"renderer": "raintrainh"' in (tmp_path / "out" / "rain_params.jsonl").read_text()


def test_two_pair_folders_qualify_names_and_weights_pick_the_folder(tmp_path):
    light = write_raintrainh_like(tmp_path / "Light")
    heavy = write_raintrainh_like(tmp_path / "Heavy")
    assert "norain-9" in {p.name for p in pairs_of([str(light)])}  # one folder: names as they are
    names = [p.name for p in pairs_of([str(light), str(heavy)])]
    assert len(names) == len(set(names)) == 24 and "Heavy/norain-9" in names and "Light/norain-9" in names
    held = ["Heavy/norain-9"]
    for weights, heavy_share in (([1.0, 0.0], 0.0), ([1.0, 3.0], 0.75)):
        patches = PairedPatches([str(light), str(heavy)], 16, None, False, 0, held, weights)
        assert "Heavy/norain-9" not in {p.name for p in patches.pairs}
        assert [{patches.pairs[i].name.split("/")[0] for i in m} for m in patches.members] == [{"Light"}, {"Heavy"}]
        picks = [int(np.random.default_rng([0, i]).choice(2, p=patches.weights)) for i in range(400)]
        assert abs(np.mean(picks) - heavy_share) < 0.06
        assert patches[3][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="pair_weights"):
        PairedPatches([str(light), str(heavy)], 16, None, False, 0, held, [1.0])


@pytest.mark.slow
def test_val_select_makes_the_chosen_groups_the_selection_score(tmp_path, rain_layers):
    from sian.models import create_model
    from sian.training.validation import build_validation_set, validate

    light = write_raintrainh_like(tmp_path / "Light")
    split = tmp_path / "val.txt"
    heavy = rain_layers.name  # the renderer's folder is also a pair folder here
    split.write_text(f"Light/norain-2\n{heavy}/norain-9\n")
    clean = tmp_path / "clean"
    clean.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            clean / f"c{i}.png"
        )
    cfg = load_config(None, [
        f"data.train_pairs=[{light},{rain_layers}]", f"data.val_split={split}", f"data.train_clean=[{clean}]",
        "data.val_holdout=1", "data.val_preset=raintrainh", "data.val_count=0", "data.val_crop=0",
        "data.patch_size=16", f"data.val_select=[{heavy},synthetic]", "train.steps=1",
    ])  # fmt: skip
    val = build_validation_set(cfg.data)
    assert val.groups == ["Light", heavy, "synthetic"]
    net = create_model("sian", channels=4, stages=2)
    scores = validate(net, val, torch.device("cpu"), select=cfg.data.val_select)
    assert scores["val_psnr"] == pytest.approx((scores[f"val_psnr_{heavy}"] + scores["val_psnr_synthetic"]) / 2)
    assert scores["val_psnr_all"] == pytest.approx(
        (scores["val_psnr_Light"] + scores[f"val_psnr_{heavy}"] + scores["val_psnr_synthetic"]) / 3
    )
    with pytest.raises(ValueError, match="val_select"):
        validate(net, val, torch.device("cpu"), select=["Rain100L_train"])


def test_exclude_training_leaves_the_held_out_draw_where_it_was(tmp_path):
    from sian.training.datasets import clean_split

    clean = tmp_path / "clean"
    clean.mkdir()
    for i in range(12):
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(clean / f"p{i}.png")
    base = [f"data.train_clean=[{clean}]", "data.val_holdout=3", "data.patch_size=16", "train.steps=1"]
    train, held = clean_split(load_config(None, base).data)
    never = tmp_path / "never.txt"
    never.write_text(f"{train[0].name}\n{train[1].name}\n")
    train_after, held_after = clean_split(load_config(None, [*base, f"data.exclude_training=[{never}]"]).data)
    assert held_after == held and train_after == train[2:]


def test_the_committed_raintrainh_split_is_the_two_fixed_draws_qualified():
    cfg = load_config(REPO / "configs/sian-raintrainh.yaml")
    names = read_pair_names(REPO / cfg.data.val_split)
    rain100l = read_pair_names(REPO / "configs/splits/rain100l-train-val20.txt")
    assert names == [f"Rain100L_train/{n}" for n in rain100l] + [f"RainTrainH_12/{n}" for n in
                                                                  ["norain-9", "norain-13", "norain-12"]]  # fmt: skip
    assert held_out_pairs() == {"norain-9", "norain-13", "norain-12"}
    backgrounds = (REPO / "configs/splits/raintrainh-val3-bsds500.tsv").read_text().splitlines()[3:]
    assert [line.split("\t")[0] for line in backgrounds] == ["norain-9.png", "norain-13.png", "norain-12.png"]
    assert cfg.data.val_select == ["RainTrainH_12", "synthetic"] and cfg.data.val_preset == "raintrainh"


@pytest.mark.shared
def test_the_raintrainh_run_never_trains_on_what_it_validates_on(monkeypatch):
    from conftest import shared_path
    from sian.synth import layers
    from sian.training.trainer import _build_data
    from sian.training.validation import validation_sources

    for needed in ("BSDS500", "Kodak24", "McMaster18", "streaks_garg_nayar", "Rain100L_train", "RainTrainH_12"):
        shared_path("data", needed)
    monkeypatch.setenv("SIAN_SHARED", str(shared_path()))
    monkeypatch.delenv("SIAN_RAINTRAINH", raising=False)
    layers._pairs.cache_clear()
    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs/sian-raintrainh.yaml")
    dataset, _ = _build_data(cfg)
    trained_photos = {path.stem for path in dataset.synthetic.files}
    held_backgrounds = {"104022", "106020", "105053"}  # BSDS500 images behind the 3 held-out pairs
    assert held_backgrounds.issubset({p.stem for p in Path(shared_path("data", "BSDS500")).rglob("*.jpg")})
    assert trained_photos.isdisjoint(held_backgrounds) and len(trained_photos) > 400
    sources = validation_sources(cfg.data)
    assert trained_photos.isdisjoint(p.stem for p in sources.clean) and len(sources.clean) == 20
    assert {p.name for p in dataset.pairs.pairs}.isdisjoint(p.name for p in sources.pairs)
    assert len(sources.pairs) == 23
    heavy = load_config(REPO / "configs/sian-streaks-heavy.yaml")  # the run it starts from held out the same photos
    assert sources.clean == validation_sources(heavy.data).clean
