import itertools

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import shared_path
from sian import inference
from sian.inference import BYTES_PER_PIXEL, MAX_AUTO_TILE, auto_tile, derain_tensor
from sian.io import read_image, to_tensor
from sian.metrics import psnr_y, quantize
from sian.models import SIAN
from sian.tiling import blend_weights, tile_starts, tiled_apply


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 5000), st.integers(2, 1200), st.floats(0, 0.99), st.sampled_from([1, 2, 4, 8]))
def test_tiles_cover_the_image_with_aligned_origins_and_enough_overlap(length, tile, overlap_share, align):
    overlap = int(overlap_share * tile)
    assume(tile - overlap >= align)  # a grid coarser than the stride cannot keep the overlap
    tiles = tile_starts(length, tile, overlap, align=align)
    assert tiles[0][0] == 0 and sum(tiles[-1]) == length
    assert all(start % align == 0 and size < tile + align for start, size in tiles)
    assert all(a[0] + a[1] - b[0] >= overlap for a, b in itertools.pairwise(tiles))
    assert tile_starts(100, 256, 32) == [(0, 100)]


def test_large_tiles_are_spread_evenly_instead_of_wasting_a_tile_per_row():
    """Fixed 1024-pixel tiles with the last one pushed back to the border derained 1.75x the pixels
    of a 4000x3000 photo (4 x 4 tiles, the last row and column almost repeating their neighbours); even: 1.16x."""
    rows, columns = tile_starts(3000, 1024, 64, align=4), tile_starts(4000, 1024, 64, align=4)
    derained = sum(h for _, h in rows) * sum(w for _, w in columns)
    assert len(rows) * len(columns) == 20 and derained / 12e6 < 1.16
    assert len({size for _, size in columns}) == 1  # equal tiles: no sliver, no near-duplicate


def test_blend_weights_ramp_only_at_shared_edges():
    inner = blend_weights(64, 32, 200, 16)
    assert inner[0] < 0.1 and inner[-1] < 0.1 and inner[32] == 1 and (inner > 0).all()
    first = blend_weights(64, 0, 200, 16)
    assert first[0] == 1 and first[-1] < 0.1


def test_tiled_apply_is_exact_for_pointwise_functions():
    x = torch.rand(2, 3, 150, 130)
    torch.testing.assert_close(tiled_apply(lambda t: t.square(), x, tile=48, overlap=12), x.square())


def synthetic_scene(size=(160, 200)):
    y, x = np.mgrid[0 : size[0], 0 : size[1]]
    image = np.stack([0.3 + 0.4 * x / size[1], 0.2 + 0.5 * y / size[0], 0.5 + 0.2 * np.sin(x / 9)], -1)
    image[:, ::13] += 0.3  # streak-like columns crossing every tile boundary
    return to_tensor(np.clip(image, 0, 1).astype(np.float32))


@pytest.mark.slow
def test_no_seams_on_a_synthetic_image():
    torch.manual_seed(0)
    model = SIAN(channels=8, stages=2).eval()  # PyTorch's default init: strongly context-dependent output
    scene = synthetic_scene()
    with torch.no_grad():
        whole = model(scene)
        faded = derain_tensor(model, scene, tile=64, overlap=24, precision="fp32")
        hard = derain_tensor(model, scene, tile=64, overlap=0, precision="fp32")
    faded_err, hard_err = (faded - whole).abs(), (hard - whole).abs()
    # Seams would show as error concentrated on the tile borders; cross-fading must keep it low and
    # clearly below hard tiling's.
    assert faded_err.max() < 0.5 * hard_err.max()
    assert 10 * torch.log10(1 / faded_err.square().mean()) > 40


def test_auto_tile_only_when_over_budget():
    assert auto_tile(321, 481) is None
    assert auto_tile(3000, 4000) == 832  # the largest multiple of 64 whose float32 maps fit the default 2 GiB
    assert auto_tile(3000, 4000, memory_budget=128 * 1024**2) == 192
    assert auto_tile(6000, 8000, memory_budget=16 * 1024**3) == MAX_AUTO_TILE  # larger tiles slow float32 down


def test_auto_tile_follows_the_precision_that_runs():
    # bf16 maps take about half the memory: larger tiles (fewer overlapping pixels) in the same budget, and
    # images that float32 must tile run whole.
    assert auto_tile(3000, 4000, dtype=torch.bfloat16) == auto_tile(3000, 4000, dtype=torch.float16) == 1152
    assert auto_tile(1024, 1024) == 832 and auto_tile(1024, 1024, dtype=torch.bfloat16) is None


def test_pipeline_tiles_by_the_precision_that_runs(monkeypatch):
    tiles = []
    monkeypatch.setattr(inference, "tiled_apply", lambda fn, image, tile, overlap, align: tiles.append(tile) or image)
    model, image = SIAN(channels=4, stages=1).eval(), torch.rand(1, 3, 200, 200)
    budget = 200 * 200 * BYTES_PER_PIXEL[2]  # the whole image fits in bf16, not in float32
    for precision in ("fp32", "bf16"):
        inference.Pipeline(model, precision=precision, memory_budget=budget).tensor(image)
    assert tiles == [128]  # float32 tiled (the largest multiple of 64 within the budget), bf16 ran whole


@pytest.mark.shared
@pytest.mark.slow
def test_tiled_authors_model_matches_whole_image_on_rain100l():
    from sian.convert import import_weights
    from sian.hub import load_model

    import_weights(shared_path("weights", "sian_authors", "rain100l.pth"), "sian-rain100l")
    model = load_model("sian-rain100l")
    rainy = read_image(shared_path("data", "Rain100L_test", "rainy", "rain-001.png"))
    clean = read_image(shared_path("data", "Rain100L_test", "norain-001.png"))
    whole = quantize(derain_tensor(model, to_tensor(rainy), memory_budget=None, precision="fp32"))
    tiled = quantize(derain_tensor(model, to_tensor(rainy), tile=256, overlap=64, precision="fp32"))
    assert abs(psnr_y(tiled, clean) - psnr_y(whole, clean)) < 0.05
    assert psnr_y(tiled, whole) > 50


def test_bf16_precision_runs_under_autocast_and_returns_float32():
    import pytest

    from sian.inference import derain_tensor
    from sian.models import create_model

    torch.manual_seed(0)
    model = create_model("sian", channels=4, stages=2).eval()
    x = torch.rand(1, 3, 20, 24)
    full = derain_tensor(model, x, precision="fp32")
    half = derain_tensor(model, x, precision="bf16")
    assert half.dtype == torch.float32 and half.shape == full.shape
    difference = (half - full).abs().max().item()
    assert 0 < difference < 0.05  # bf16 rounding happened, and it stays small
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        derain_tensor(model, x, precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        derain_tensor(model, x, precision="int8")
