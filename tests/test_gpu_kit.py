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
            (data / kit.PAIRS / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(data / kit.PAIRS / folder / name)
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
    parts = kit.pack(shared_data, tmp_path / "kit", part_bytes=4000, wheels=False)
    assert parts > 2  # small parts: datasets are dealt over several, a pair never split
    kit.unpack(tmp_path / "there", sorted((tmp_path / "kit").glob("part*")))
    original, unpacked = _files(shared_data), _files(tmp_path / "there" / "data")
    assert sorted(original) == sorted(unpacked)
    for name, blob in original.items():
        if name.startswith(kit.PAIRS):  # re-encoded PNGs: the same pixels, not the same bytes
            np.testing.assert_array_equal(
                np.asarray(Image.open(shared_data / name)), np.asarray(Image.open(tmp_path / "there" / "data" / name))
            )
        else:
            assert unpacked[name] == blob, name


def _holdings(part: Path) -> set[str]:
    return {p.relative_to(part).parts[0] for p in part.rglob("*") if p.is_file() and p.name != "counts.json"}


def test_a_dataset_split_over_a_missing_part_is_an_error_not_a_smaller_dataset(shared_data, tmp_path):
    kit.pack(shared_data, tmp_path / "kit", part_bytes=4000, wheels=False)
    parts = sorted((tmp_path / "kit").glob("part*"), key=lambda p: int(p.name[4:]))
    # The first part past part1 that shares a dataset with another part: leaving it behind splits that dataset.
    split = next(p for p in parts[1:] if any(_holdings(p) & _holdings(q) for q in parts if q != p))
    with pytest.raises(SystemExit, match="incomplete kit"):
        kit.unpack(tmp_path / "there", [p for p in parts if p != split])


def test_whole_datasets_may_stay_behind(shared_data, tmp_path, capsys):
    kit.pack(shared_data, tmp_path / "kit", part_bytes=4000, wheels=False)
    parts = sorted((tmp_path / "kit").glob("part*"), key=lambda p: int(p.name[4:]))
    only_pairs = [p for p in parts if _holdings(p) <= {kit.PAIRS}]  # the parts that hold Rain100L alone
    kit.unpack(tmp_path / "there", only_pairs)
    assert "not carried" in capsys.readouterr().out
    assert len(list((tmp_path / "there" / "data" / kit.PAIRS / "rain").iterdir())) == 2
