"""Pack the training data of our runs for a GPU machine lent by the `device` tool, and unpack it there.

    python scripts/gpu_kit.py pack                    # here: build/gpu/{wheels,part1,part2,...}
    python scripts/gpu_kit.py unpack DEST PART ...    # there: DEST/data/<dataset>/..., exactly as in ../shared

Why: a device call carries at most 64 MiB with the repository's working tree (about 34 MB), and the
datasets our runs train on (issue 14: Rain100L_train; issue 15: also BSDS500, Kodak24, McMaster18 and the
streak bank) are ~190 MB. Packed: each Rain100L clean image is lossless WebP and each rainy one the
lzma-compressed difference rainy - clean (mod 256; Rain100L's streaks are added, so it is mostly zeros);
every other file is its own bytes, lzma-compressed where that saves space. The files are dealt into parts
of at most ``PART_BYTES`` (less where the working tree leaves less room), Rain100L first and alone (every
run needs it; a lease with time for the Rain100L run only carries those parts), so the parts travel in as
many calls; each call's carried files stay on the machine for the next. A dataset can stay behind whole,
never in part. Every packed image is checked to decode to exactly its original pixels (other files to
exactly their bytes); unpacking writes them under their original names and checks the counts in
``part1/counts.json``. ``pack`` also downloads the wheels the GPU image lacks (Python 3.12) and prints the
device calls; scripts/gpu_train.sh (header) says the rest.
"""

from __future__ import annotations

import io
import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "build" / "gpu"
WHEELS = ["kornia==0.9.0", "kornia_rs==0.2.0", "omegaconf==2.4.0", "pypng==0.20220715.0"]
PAIRS = "Rain100L_train"
# In the order the parts are filled: what every run needs first, then issue 15's clean images and streaks.
DATASETS = [PAIRS, "streaks_garg_nayar", "Kodak24", "McMaster18", "BSDS500"]
PART_BYTES = 20_000_000  # at most; less where the working tree leaves less of a call's 64 MiB
CALL_BYTES = 64 * 2**20 - 2_000_000  # what one device call carries, less a margin
PAIRS_PARTS = "parts_for_" + PAIRS  # in counts.json: parts 1..N hold Rain100L_train, and only it


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


def _packed_items(data: Path, dataset: str):
    """(relative path in the part, bytes) for every file of ``dataset``, each checked to unpack exactly."""
    root = data / dataset
    if dataset == PAIRS:
        for clean_path in sorted((root / "norain").glob("*.png")):
            name = clean_path.name
            clean, rainy = _rgb(clean_path), _rgb(root / "rain" / name)
            if clean.shape != rainy.shape:
                raise SystemExit(f"{name}: rainy and clean sizes differ; this kit packs aligned pairs only")
            clean_bytes, rain_bytes = _encode(clean, rainy)
            decoded = _decode(clean_bytes, rain_bytes)
            if not (np.array_equal(decoded[0], clean) and np.array_equal(decoded[1], rainy)):
                raise SystemExit(f"{name}: packing is not lossless")
            # One pair travels together: the two files go into the same part.
            yield [(f"{dataset}/{name}.clean.webp", clean_bytes), (f"{dataset}/{name}.rain.xz", rain_bytes)]
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        packed = lzma.compress(raw, preset=6)
        relative = f"{dataset}/{path.relative_to(root).as_posix()}"
        yield [(relative + ".xz", packed) if len(packed) < 0.95 * len(raw) else (relative, raw)]


def pack(data: Path, kit: Path = KIT, part_bytes: int = PART_BYTES, wheels: bool = True) -> int:
    """Deal ``data``'s datasets into ``kit/part1..N`` (and the wheels into ``kit/wheels``); returns N."""
    for dataset in DATASETS:
        if not (data / dataset).is_dir():
            raise SystemExit(f"no {dataset} in {data} (set SIAN_SHARED)")
    for old in kit.glob("part*"):
        shutil.rmtree(old)
    counts, part, used = {}, 1, 0
    for dataset in DATASETS:
        if dataset != PAIRS and counts.get(PAIRS) and PAIRS_PARTS not in counts:
            # The other datasets start a fresh part, so the Rain100L parts alone make a complete kit.
            counts[PAIRS_PARTS], part, used = part, part + 1, 0
        for group in _packed_items(data, dataset):
            size = sum(len(blob) for _, blob in group)
            if used and used + size > part_bytes:
                part, used = part + 1, 0
            for relative, blob in group:
                target = kit / f"part{part}" / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)
            used += size
            counts[dataset] = counts.get(dataset, 0) + 1
    (kit / "part1" / "counts.json").write_text(json.dumps(counts, indent=1) + "\n")
    if not wheels:
        return part
    (kit / "wheels").mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
         "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
         "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(kit / "wheels"), *WHEELS],
        check=True,
    )  # fmt: skip
    for folder in sorted(kit.iterdir()):
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"{folder}: {size / 1e6:.1f} MB")
    print(f"{part} parts; counts {counts}")
    for last, runs in ((counts[PAIRS_PARTS], "configs/rain100l-cpu.yaml"), (part, "CONFIG ...")):
        print(f"for {runs}, device calls back to back:")
        for index in range(1, last + 1):
            carry = [f"build/gpu/part{index}"] + (["build/gpu/wheels"] if index == last else [])
            command = f'"bash scripts/gpu_train.sh SECONDS {runs}"' if index == last else '"true"'
            print(f"  {index}. carry {json.dumps(carry)}, command {command}")
    return part


def unpack(destination: Path, parts: list[Path]) -> None:
    counts: dict[str, int] = {}
    expected = None
    for part in parts:
        if (part / "counts.json").exists():
            expected = json.loads((part / "counts.json").read_text())
        for packed in sorted(p for p in part.rglob("*") if p.is_file() and p.name != "counts.json"):
            relative = packed.relative_to(part).as_posix()
            dataset = relative.split("/", 1)[0]
            if dataset == PAIRS:
                if not relative.endswith(".clean.webp"):
                    continue  # the rainy half is read with its clean half
                name = packed.name.removesuffix(".clean.webp")
                clean, rainy = _decode(packed.read_bytes(), (packed.parent / f"{name}.rain.xz").read_bytes())
                root = destination / "data" / PAIRS
                for folder, image in (("norain", clean), ("rain", rainy)):
                    (root / folder).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(image).save(root / folder / name, compress_level=1)
            else:
                target = destination / "data" / relative.removesuffix(".xz")
                target.parent.mkdir(parents=True, exist_ok=True)
                blob = packed.read_bytes()
                target.write_bytes(lzma.decompress(blob) if relative.endswith(".xz") else blob)
            counts[dataset] = counts.get(dataset, 0) + 1
    print(f"unpacked into {destination / 'data'}: {counts}")
    if expected is None:
        raise SystemExit("no counts.json: carry part1 (it lists what every dataset should hold)")
    # A dataset may stay behind whole (a short lease that trains only the Rain100L run carries fewer parts),
    # never in part: a missing part would otherwise train on a silently smaller dataset.
    expected.pop(PAIRS_PARTS, None)
    partial = {k: f"{counts[k]} of {v}" for k, v in expected.items() if 0 < counts.get(k, 0) != v}
    if partial:
        raise SystemExit(f"incomplete kit: {partial} files; carry every part that holds them (see gpu_train.sh)")
    absent = [k for k in expected if k not in counts]
    if absent:
        print(f"not carried (runs that need them will stop): {absent}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["pack"]:
        from sian.data import shared_folder  # here only: unpacking, on the GPU machine, needs no sian

        # Every call sends the working tree too (tracked and untracked-not-ignored files): parts fill the rest.
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                                capture_output=True, check=True).stdout.split(b"\0")  # fmt: skip
        files = [REPO / name.decode() for name in listed if name]
        tree = sum(path.stat().st_size for path in files if path.is_file())
        room = CALL_BYTES - tree - 8_000_000  # the wheels travel with the last part
        if room < 5_000_000:
            raise SystemExit(f"the working tree ({tree / 1e6:.0f} MB) leaves no room in a device call for data")
        pack(shared_folder(REPO.parent / "shared") / "data", part_bytes=min(PART_BYTES, room))
    elif sys.argv[1:2] == ["unpack"] and len(sys.argv) > 3:
        unpack(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
    else:
        raise SystemExit(__doc__)
