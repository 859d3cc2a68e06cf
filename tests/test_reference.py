"""The authors' weights through our code reproduce their published per-image scores."""

import re

import pytest

from conftest import shared_path
from sian.convert import import_weights
from sian.data import find_pairs
from sian.evaluate import evaluate
from sian.hub import load_model


def published_scores():
    text = shared_path("weights", "sian_authors", "rain100l_per_image_scores.txt").read_text()
    return {
        m["name"]: (float(m["psnr"]), float(m["ssim"]))
        for m in re.finditer(r"img=(?P<name>[\w-]+)\.png,psnr=(?P<psnr>[\d.]+),ssim=(?P<ssim>[\d.]+)", text)
    }


@pytest.fixture(scope="module")
def rain100l():
    return find_pairs(shared_path("data", "Rain100L_test")).pairs


@pytest.mark.slow
def test_sian_authors_weights_reproduce_the_per_image_log(rain100l):
    scores = published_scores()
    assert len(scores) == 100
    import_weights(shared_path("weights", "sian_authors", "rain100l.pth"), "sian-rain100l")
    picked = [p for p in rain100l if p.name in ("rain-001", "rain-016", "rain-057")]
    rows = evaluate(load_model("sian-rain100l"), picked, "round")
    for row in rows:
        psnr, ssim = scores[row.name]
        assert row.psnr == pytest.approx(psnr, abs=1e-3), row.name
        assert row.ssim == pytest.approx(ssim, abs=1e-4), row.name


@pytest.mark.slow
def test_prenet_authors_weights_with_floor_quantisation(rain100l):
    import_weights(shared_path("weights", "prenet_authors", "Rain100L", "PReNet6.pth"), "prenet-rain100l")
    model = load_model("prenet-rain100l")
    floor = evaluate(model, rain100l[:1], "floor")[0]
    rounded = evaluate(model, rain100l[:1], "round")[0]
    assert floor.input_psnr == pytest.approx(27.3008, abs=1e-4)
    assert floor.psnr > floor.input_psnr + 8
    assert rounded.psnr != floor.psnr  # the quantisation is a real, recorded choice
