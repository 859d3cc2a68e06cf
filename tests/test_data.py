from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sian.data import DatasetLayoutError, detect_layout, find_pairs, shared_folder


def touch_image(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)
    return path


def test_rain100l_layout(tmp_path):
    for i in (1, 2, 10):
        touch_image(tmp_path / f"norain-{i:03d}.png")
        touch_image(tmp_path / "rainy" / f"rain-{i:03d}.png")
    touch_image(tmp_path / "rainy" / "rain-004.png")  # no clean partner
    result = find_pairs(tmp_path)
    assert result.layout == "rain100l"
    assert [p.name for p in result.pairs] == ["rain-001", "rain-002", "rain-010"]
    assert result.pairs[0].clean.name == "norain-001.png"
    assert [p.name for p in result.unpaired_rainy] == ["rain-004.png"]
    assert any("rain-004" in line for line in result.problems())


def test_rain100h_layout_is_generic_rain_norain(tmp_path):
    for i in (1, 2, 11):
        touch_image(tmp_path / "rain" / f"norain-{i}.png")
        touch_image(tmp_path / "norain" / f"norain-{i}.png")
    result = find_pairs(tmp_path)
    assert result.layout == "generic"
    assert [p.name for p in result.pairs] == ["norain-1", "norain-2", "norain-11"]  # natural order
    assert all(p.rainy.parent.name == "rain" and p.clean.parent.name == "norain" for p in result.pairs)


def test_rain1400_layout_pairs_fourteen_rain_types_with_one_clean(tmp_path):
    touch_image(tmp_path / "ground_truth" / "901.jpg")
    for k in range(1, 15):
        touch_image(tmp_path / "rainy_image" / f"901_{k}.jpg")
    result = find_pairs(tmp_path)
    assert result.layout == "rain1400" and len(result.pairs) == 14
    assert {p.clean.name for p in result.pairs} == {"901.jpg"}
    assert result.pairs[1].name == "901_2"


def test_rain12_layout(tmp_path):
    for i in (1, 2):
        touch_image(tmp_path / f"{i:03d}_in.png")
        touch_image(tmp_path / f"{i:03d}_GT.png")
    touch_image(tmp_path / "003_GT.png")
    result = find_pairs(tmp_path)
    assert result.layout == "rain12" and [p.name for p in result.pairs] == ["001_in", "002_in"]
    assert [p.name for p in result.unpaired_clean] == ["003_GT.png"]


def test_pair_list(tmp_path):
    touch_image(tmp_path / "a" / "x.png")
    touch_image(tmp_path / "b" / "y.png")
    listing = tmp_path / "pairs.txt"
    listing.write_text("# rainy clean\na/x.png b/y.png\na/missing.png b/y.png\n")
    result = find_pairs(listing, "auto")
    assert result.layout == "list" and len(result.pairs) == 1
    assert [p.name for p in result.missing] == ["missing.png"]
    listing.write_text("a/x.png\n")
    with pytest.raises(DatasetLayoutError, match="expected 'RAINY CLEAN'"):
        find_pairs(listing, "list")


def test_unknown_layouts_and_empty_sets_are_clear_errors(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"cannot tell the layout.*photos"):
        detect_layout(tmp_path)
    with pytest.raises(DatasetLayoutError, match="not found"):
        find_pairs(tmp_path / "nope")
    touch_image(tmp_path / "input" / "a.png")
    touch_image(tmp_path / "target" / "b.png")
    with pytest.raises(DatasetLayoutError, match="no rainy/clean pairs"):
        find_pairs(tmp_path, "generic")
    with pytest.raises(DatasetLayoutError, match="unknown layout"):
        find_pairs(tmp_path, "rain200")


def test_shared_folder_prefers_the_environment_and_ignores_an_empty_value(monkeypatch, tmp_path):
    monkeypatch.setenv("SIAN_SHARED", str(tmp_path))
    assert shared_folder("/elsewhere") == tmp_path
    monkeypatch.setenv("SIAN_SHARED", "")  # an empty value once meant the working directory
    assert shared_folder("/elsewhere") == Path("/elsewhere")
    monkeypatch.delenv("SIAN_SHARED")
    assert shared_folder() == Path("../shared")


def test_the_streak_bank_is_found_through_the_shared_folder(monkeypatch, tmp_path):
    from sian.synth.streaks import streak_bank_dir

    monkeypatch.delenv("SIAN_STREAK_BANK", raising=False)
    monkeypatch.setenv("SIAN_SHARED", str(tmp_path))
    assert streak_bank_dir() == tmp_path / "data" / "streaks_garg_nayar"
