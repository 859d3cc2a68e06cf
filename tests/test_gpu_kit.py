"""scripts/gpu_kit_rain100l.py carries the Rain100L training set to a lent GPU: it must be lossless."""

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_kit_rain100l.py"
spec = importlib.util.spec_from_file_location("gpu_kit_rain100l", SCRIPT)
kit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kit)


def test_packed_pairs_unpack_to_exactly_their_pixels(tmp_path):
    rng = np.random.default_rng(0)
    part = tmp_path / "part1"
    part.mkdir()
    originals = {}
    for name, (h, w) in {"norain-1.png": (21, 34), "norain-22.png": (33, 17)}.items():
        clean = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rainy = np.clip(clean.astype(int) + rng.integers(-40, 120, (h, w, 3)), 0, 255).astype(np.uint8)  # both signs
        clean_bytes, rain_bytes = kit._encode(clean, rainy)
        (part / f"{name}.clean.webp").write_bytes(clean_bytes)
        (part / f"{name}.rain.xz").write_bytes(rain_bytes)
        originals[name] = clean, rainy
    kit.unpack(tmp_path / "shared", [part])
    root = tmp_path / "shared" / "data" / "Rain100L_train"
    for name, (clean, rainy) in originals.items():
        np.testing.assert_array_equal(np.asarray(Image.open(root / "norain" / name)), clean)
        np.testing.assert_array_equal(np.asarray(Image.open(root / "rain" / name)), rainy)
