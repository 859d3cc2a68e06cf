"""scripts/gpu_kit.py carries our training data to a lent GPU: it must be lossless and complete."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_kit.py"
spec = importlib.util.spec_from_file_location("gpu_kit", SCRIPT)
kit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kit)


@pytest.fixture
def shared_data(tmp_path):
    """A miniature ../shared/data with every dataset the kit packs: pairs, PNG/TIFF/JPEG and a text file."""
    rng = np.random.default_rng(0)
    data = tmp_path / "shared" / "data"
    for name, (h, w) in {"norain-1.png": (21, 34), "norain-22.png": (33, 17)}.items():
        clean = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rainy = np.clip(clean.astype(int) + rng.integers(-40, 120, (h, w, 3)), 0, 255).astype(np.uint8)  # both signs
        for folder, image in (("norain", clean), ("rain", rainy)):
            (data.parent / kit.PAIRS / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(data.parent / kit.PAIRS / folder / name)
    for dataset, suffix in (("streaks_garg_nayar", ".png"), ("Kodak24", ".png"), ("McMaster18", ".tif")):
        (data / dataset).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(data / dataset / f"{index}{suffix}")
    (data / "BSDS500" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(data / "BSDS500" / "train" / "1.jpg", quality=90)
    (data / "BSDS500" / "OVERLAP.tsv").write_text("a\tb\n" * 200)  # compresses: travels as .xz
    return data


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_every_file_unpacks_exactly_and_pairs_to_their_pixels(shared_data, tmp_path):
    parts = kit.pack(shared_data.parent, tmp_path / "kit", part_bytes=4000, wheels=False)
    assert parts > 2  # small parts: datasets are dealt over several, a pair never split
    kit.unpack(tmp_path / "there", sorted((tmp_path / "kit").glob("part*")))
    original, unpacked = _files(shared_data), _files(tmp_path / "there" / "data")
    assert sorted(original) == sorted(unpacked)
    for name, blob in original.items():
        if "data/" + name.split("/")[0] in kit.PAIRED:  # re-encoded PNGs: the same pixels, not the same bytes
            np.testing.assert_array_equal(
                np.asarray(Image.open(shared_data / name)), np.asarray(Image.open(tmp_path / "there" / "data" / name))
            )
        else:
            assert unpacked[name] == blob, name


def _holdings(part: Path) -> set[str]:
    return {
        kit.dataset_of(p.relative_to(part).as_posix())
        for p in part.rglob("*")
        if p.is_file() and p.name != "counts.json"
    }


def test_a_dataset_split_over_a_missing_part_is_an_error_not_a_smaller_dataset(shared_data, tmp_path):
    kit.pack(shared_data.parent, tmp_path / "kit", part_bytes=4000, wheels=False)
    parts = sorted((tmp_path / "kit").glob("part*"), key=lambda p: int(p.name[4:]))
    # The first part past part1 that shares a dataset with another part: leaving it behind splits that dataset.
    split = next(p for p in parts[1:] if any(_holdings(p) & _holdings(q) for q in parts if q != p))
    with pytest.raises(SystemExit, match="incomplete kit"):
        kit.unpack(tmp_path / "there", [p for p in parts if p != split])


def test_whole_datasets_may_stay_behind(shared_data, tmp_path, capsys):
    kit.pack(shared_data.parent, tmp_path / "kit", part_bytes=4000, wheels=False)
    parts = sorted((tmp_path / "kit").glob("part*"), key=lambda p: int(p.name[4:]))
    only_pairs = [p for p in parts if _holdings(p) <= {kit.PAIRS}]  # the parts that hold Rain100L alone
    kit.unpack(tmp_path / "there", only_pairs)
    assert "not carried" in capsys.readouterr().out
    assert len(list((tmp_path / "there" / kit.PAIRS / "rain").iterdir())) == 2


def test_the_eval_kit_carries_the_rain100l_test_layout_and_a_single_weights_file(tmp_path, capsys):
    """The Rain100L test set keeps its own layout (norain-N.png beside rainy/rain-N.png), and the eval kit takes
    one file of the authors' weights folder, not all of it."""
    rng = np.random.default_rng(1)
    shared = tmp_path / "shared"
    test = shared / "data" / "Rain100L_test"
    (test / "rainy").mkdir(parents=True)
    for index in (1, 2, 3):
        clean = rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)
        Image.fromarray(clean).save(test / f"norain-{index:03d}.png")
        Image.fromarray(np.maximum(clean, 200).astype(np.uint8)).save(test / "rainy" / f"rain-{index:03d}.png")
    weights = shared / "weights" / "sian_authors"
    weights.mkdir(parents=True)
    (weights / "rain100l.pth").write_bytes(rng.bytes(5000))
    (weights / "rain100h.pth").write_bytes(b"not carried")
    parts = kit.pack(shared, tmp_path / "kit", part_bytes=3000, wheels=False, name="eval")
    kit.unpack(tmp_path / "there", [tmp_path / "kit" / f"part{i}" for i in range(1, parts + 1)])
    there = tmp_path / "there"
    assert (there / "weights/sian_authors/rain100l.pth").read_bytes() == (weights / "rain100l.pth").read_bytes()
    assert not (there / "weights/sian_authors/rain100h.pth").exists()
    for original in [*test.glob("*.png"), *(test / "rainy").glob("*.png")]:
        copy = there / original.relative_to(shared)
        np.testing.assert_array_equal(np.asarray(Image.open(copy)), np.asarray(Image.open(original)))
    assert len(list(there.rglob("*.png"))) == 6
    assert "not carried" not in capsys.readouterr().out  # every dataset arrived, and is counted as arrived
