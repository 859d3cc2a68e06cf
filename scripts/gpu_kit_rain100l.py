"""Pack issue 14's Rain100L run for a GPU machine lent by the `device` tool, and unpack it there.

    python scripts/gpu_kit_rain100l.py pack      # here: build/gpu/{wheels,part1,part2}
    python scripts/gpu_kit_rain100l.py unpack DEST [PART ...]   # there: DEST/data/Rain100L_train/{norain,rain}

Why: a device call carries at most 64 MiB with the repository (about 34 MB), and Rain100L_train is 96 MB
of PNGs. Packed, each clean image is lossless WebP and each rainy one the lzma-compressed difference
rainy - clean (mod 256; Rain100L's streaks are added, so it is mostly zeros): about 45 MB, in two parts that
travel in two calls. Every image is checked after packing to decode to exactly its original pixels, and
unpacking writes PNGs with those pixels under the original names. ``pack`` also downloads the wheels the
GPU image lacks (kornia, kornia_rs, omegaconf, pypng; Python 3.12). The calls are in
scripts/gpu_train_rain100l.sh (header) and README.md ("Our own weights").
"""

from __future__ import annotations

import io
import lzma
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "build" / "gpu"
WHEELS = ["kornia==0.9.0", "kornia_rs==0.2.0", "omegaconf==2.4.0", "pypng==0.20220715.0"]


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _encode(clean: np.ndarray, rainy: np.ndarray) -> tuple[bytes, bytes]:
    buffer = io.BytesIO()
    Image.fromarray(clean).save(buffer, "WEBP", lossless=True, quality=100, method=4)
    difference = (rainy.astype(np.int16) - clean.astype(np.int16)) % 256
    header = np.array(rainy.shape, dtype=np.int32).tobytes()
    return buffer.getvalue(), header + lzma.compress(difference.astype(np.uint8).tobytes(), preset=6)


def _decode(clean_bytes: bytes, rain_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    clean = np.asarray(Image.open(io.BytesIO(clean_bytes)).convert("RGB"))
    shape = tuple(np.frombuffer(rain_bytes[:12], dtype=np.int32))
    difference = np.frombuffer(lzma.decompress(rain_bytes[12:]), dtype=np.uint8).reshape(shape)
    rainy = ((clean.astype(np.int16) + difference) % 256).astype(np.uint8)
    return clean, rainy


def pack() -> None:
    from sian.data import shared_folder  # here only: unpacking, on the GPU machine, needs no sian

    source = shared_folder(REPO.parent / "shared") / "data" / "Rain100L_train"
    names = sorted(p.name for p in (source / "norain").glob("*.png"))
    if not names:
        raise SystemExit(f"no Rain100L_train pairs in {source} (set SIAN_SHARED)")
    parts = [KIT / "part1", KIT / "part2"]
    for part in parts:
        part.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        clean, rainy = _rgb(source / "norain" / name), _rgb(source / "rain" / name)
        if clean.shape != rainy.shape:
            raise SystemExit(f"{name}: rainy and clean sizes differ; this kit packs aligned pairs only")
        clean_bytes, rain_bytes = _encode(clean, rainy)
        decoded = _decode(clean_bytes, rain_bytes)
        if not (np.array_equal(decoded[0], clean) and np.array_equal(decoded[1], rainy)):
            raise SystemExit(f"{name}: packing is not lossless")
        part = parts[index % 2]
        (part / f"{name}.clean.webp").write_bytes(clean_bytes)
        (part / f"{name}.rain.xz").write_bytes(rain_bytes)
    (KIT / "wheels").mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
         "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
         "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(KIT / "wheels"), *WHEELS],
        check=True,
    )  # fmt: skip
    for folder in [*parts, KIT / "wheels"]:
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{folder.relative_to(REPO)}: {size / 1e6:.1f} MB")


def unpack(destination: Path, parts: list[Path]) -> None:
    root = destination / "data" / "Rain100L_train"
    (root / "norain").mkdir(parents=True, exist_ok=True)
    (root / "rain").mkdir(parents=True, exist_ok=True)
    count = 0
    for part in parts:
        for clean_file in sorted(part.glob("*.clean.webp")):
            name = clean_file.name.removesuffix(".clean.webp")
            clean, rainy = _decode(clean_file.read_bytes(), (part / f"{name}.rain.xz").read_bytes())
            Image.fromarray(clean).save(root / "norain" / name, compress_level=1)
            Image.fromarray(rainy).save(root / "rain" / name, compress_level=1)
            count += 1
    print(f"unpacked {count} pairs into {root}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["pack"]:
        pack()
    elif sys.argv[1:2] == ["unpack"] and len(sys.argv) > 2:
        unpack(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]] or [KIT / "part1", KIT / "part2"])
    else:
        raise SystemExit(__doc__)
