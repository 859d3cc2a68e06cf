"""sian explain: the right panels, per-stage scores, and both files."""

import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sian.cli import app
from sian.explain import explain
from sian.models import create_model
from sian.weights import save_weights


def test_panels_of_sian_and_prenet():
    rng = np.random.default_rng(0)
    rainy, clean = (rng.integers(0, 255, (24, 30, 3), np.uint8) for _ in range(2))
    sian = create_model("sian", channels=4, stages=3).eval()
    result = explain(sian, rainy, clean)
    titles = [p.title for p in result.panels]
    # input, reference, 3 stages, rain layer, 3 attention masks, 3 octaves x 5 DoG maps
    assert len(titles) == 2 + 3 + 1 + 3 + 15
    assert titles[:6] == ["rainy input", "clean reference", "stage 1", "stage 2", "stage 3", "rain layer"]
    assert sum(t.startswith("attention") for t in titles) == 3 and sum(t.startswith("DoG") for t in titles) == 15
    assert len(result.stage_scores) == 3 and "Y-PSNR" in result.panels[2].caption
    assert all(p.image.min() >= 0.0 and p.image.max() <= 1.0 for p in result.panels if p.cmap)
    prenet = explain(create_model("prenet", channels=4, stages=2).eval(), rainy)
    assert [p.title for p in prenet.panels] == ["rainy input", "stage 1", "stage 2", "rain layer"]


@pytest.mark.slow
def test_cli_writes_figure_and_self_contained_html(tmp_path):
    model = create_model("sian", channels=4, stages=2)
    weights = save_weights(tmp_path / "m.safetensors", model, "sian", model.config)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (40, 52, 3), np.uint8)).save(tmp_path / "rain.png")
    Image.fromarray(rng.integers(0, 255, (40, 52, 3), np.uint8)).save(tmp_path / "clean.png")
    args = ["explain", str(tmp_path / "rain.png"), "--gt", str(tmp_path / "clean.png"), "-o", str(tmp_path / "out"),
            "--model", str(weights)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "23 panels" in result.output and "stage 2: Y-PSNR" in result.output
    page = (tmp_path / "out" / "rain_explain.html").read_text()
    assert page.count("<figure>") == 23 and page.count("data:image/png;base64,") == 23
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from elsewhere
    with Image.open(tmp_path / "out" / "rain_explain.png") as figure:
        assert figure.format == "PNG" and figure.width > 300
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    Image.fromarray(rng.integers(0, 255, (20, 52, 3), np.uint8)).save(tmp_path / "small.png")
    mismatch = CliRunner().invoke(app, ["explain", str(tmp_path / "rain.png"), "--gt", str(tmp_path / "small.png"),
                                        "-o", str(tmp_path / "o2"), "--model", str(weights)])  # fmt: skip
    assert mismatch.exit_code == 2 and "--gt is 52x20 but the image is 52x40" in mismatch.output
