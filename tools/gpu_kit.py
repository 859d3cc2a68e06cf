"""Pack data from ../shared for a GPU machine lent by the `device` tool, and unpack it there.

    python tools/gpu_kit.py pack [train|eval]           # here: build/gpu/wheels, build/gpu/KIT/part1..N
    python tools/gpu_kit.py unpack DEST PART ...        # there: DEST/data/<dataset>/..., exactly as in ../shared

Two kits: ``train``, the datasets our runs train on (Rain100L_train, RainTrainH_12, BSDS500, Kodak24,
McMaster18 and the streak bank; ~190 MB; tools/gpu_train.sh), and ``eval``, the Rain100L test set and the
authors' Rain100L SIAN weights (~55 MB; for `sian eval` and `sian bench` there).

Why: a device call carries at most 64 MiB with the repository's working tree (about 56 MB), so data travels
packed, in parts, over several calls; each call's carried files stay on the machine for the next. Packed:
each clean image of a paired dataset is lossless WebP and its rainy one the lzma-compressed difference
rainy - clean (mod 256; Rain100L's streaks are added, so it is mostly zeros), with the rainy file's own path;
every other file is its own bytes, lzma-compressed where that saves space. The files are dealt into parts
of at most ``PART_BYTES`` (less where the working tree leaves less room), the kit's first dataset first and
alone (for training, Rain100L: a lease with time for the Rain100L run only carries those parts). A dataset
can stay behind whole, never in part. Every packed image is checked to decode to exactly its original
pixels (other files to exactly their bytes); unpacking writes them under their original names and checks
the counts in ``part1/counts.json``. ``pack`` also downloads the wheels the GPU image lacks (Python 3.12)
and prints the device calls.
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
BUILD = REPO / "build" / "gpu"
WHEELS = ["kornia==0.9.0", "kornia_rs==0.2.0", "omegaconf==2.4.0", "pypng==0.20220715.0"]
PAIRS = "data/Rain100L_train"
# Paths under ../shared, in the order the parts are filled: what every use of the kit needs first.
KITS = {
    # Every run needs Rain100L_train; then the clean images and the rain sources of the fine-tunes.
    "train": [
        PAIRS,
        "data/RainTrainH_12",
        "data/streaks_garg_nayar",
        "data/Kodak24",
        "data/McMaster18",
        "data/BSDS500",
    ],
    "eval": ["data/Rain100L_test", "weights/sian_authors/rain100l.pth"],
}
# Rainy/clean pairs (sian.data.find_pairs reads their layout).
PAIRED = {PAIRS, "data/RainTrainH_12", "data/Rain100L_test"}
PART_BYTES = 20_000_000  # at most; less where the working tree leaves less of a call's 64 MiB
CALL_BYTES = 64 * 2**20 - 2_000_000  # what one device call carries, less a margin
FIRST_PARTS = "parts_for_first"  # in counts.json: parts 1..N hold the kit's first dataset, and only it


def dataset_of(relative: str) -> str:
    """The dataset a packed or unpacked path belongs to: its first two components (``data/Kodak24``)."""
    return "/".join(relative.split("/")[:2])


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _encode(clean: np.ndarray, rainy: np.ndarray, rainy_path: str) -> tuple[bytes, bytes]:
    buffer = io.BytesIO()
    Image.fromarray(clean).save(buffer, "WEBP", lossless=True, quality=100, method=4)
    difference = (rainy.astype(np.int16) - clean.astype(np.int16)) % 256
    path = rainy_path.encode()
    header = len(path).to_bytes(2, "little") + path + np.array(rainy.shape, dtype=np.int32).tobytes()
    return buffer.getvalue(), header + lzma.compress(difference.astype(np.uint8).tobytes(), preset=6)


def _decode(clean_bytes: bytes, rain_bytes: bytes) -> tuple[np.ndarray, np.ndarray, str]:
    """The clean and rainy images of a packed pair, and the rainy file's path within its dataset."""
    clean = np.asarray(Image.open(io.BytesIO(clean_bytes)).convert("RGB"))
    length = int.from_bytes(rain_bytes[:2], "little")
    path, rest = rain_bytes[2 : 2 + length].decode(), rain_bytes[2 + length :]
    shape = tuple(np.frombuffer(rest[:12], dtype=np.int32))
    difference = np.frombuffer(lzma.decompress(rest[12:]), dtype=np.uint8).reshape(shape)
    rainy = ((clean.astype(np.int16) + difference) % 256).astype(np.uint8)
    return clean, rainy, path


def _packed_items(shared: Path, dataset: str):
    """(relative path in the part, bytes) for every file of ``dataset``, each checked to unpack exactly."""
    root = shared / dataset
    if dataset in PAIRED:
        from sian.data import find_pairs  # here only: unpacking, on the GPU machine, needs no sian

        for pair in find_pairs(root).pairs:
            clean_name, rainy_name = (p.relative_to(root).as_posix() for p in (pair.clean, pair.rainy))
            clean, rainy = _rgb(pair.clean), _rgb(pair.rainy)
            if clean.shape != rainy.shape:
                raise SystemExit(f"{pair.name}: rainy and clean sizes differ; this kit packs aligned pairs only")
            clean_bytes, rain_bytes = _encode(clean, rainy, rainy_name)
            decoded = _decode(clean_bytes, rain_bytes)
            if not (np.array_equal(decoded[0], clean) and np.array_equal(decoded[1], rainy)):
                raise SystemExit(f"{pair.name}: packing is not lossless")
            # One pair travels together: the two files go into the same part.
            name = f"{dataset}/{clean_name}"
            yield [(f"{name}.clean.webp", clean_bytes), (f"{name}.rain.xz", rain_bytes)]
        return
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        raw = path.read_bytes()
        packed = lzma.compress(raw, preset=6)
        relative = path.relative_to(shared).as_posix()
        yield [(relative + ".xz", packed) if len(packed) < 0.95 * len(raw) else (relative, raw)]


def pack(shared: Path, kit: Path, part_bytes: int = PART_BYTES, wheels: bool = True, name: str = "train") -> int:
    """Deal the ``name`` kit's datasets from ``shared`` into ``kit/part1..N`` (and the wheels into
    ``kit/../wheels``); returns N."""
    datasets = KITS[name]
    for dataset in datasets:
        if not (shared / dataset).exists():
            raise SystemExit(f"no {dataset} in {shared} (set SIAN_SHARED)")
    for old in kit.glob("part*"):
        shutil.rmtree(old)
    counts, part, used = {}, 1, 0
    first = dataset_of(datasets[0])
    for dataset in datasets:
        key = dataset_of(dataset)  # as unpack counts it: a single file counts for its folder
        if key != first and counts.get(first) and FIRST_PARTS not in counts:
            # The other datasets start a fresh part, so the first dataset's parts alone make a complete kit.
            counts[FIRST_PARTS], part, used = part, part + 1, 0
        for group in _packed_items(shared, dataset):
            size = sum(len(blob) for _, blob in group)
            if used and used + size > part_bytes:
                part, used = part + 1, 0
            for relative, blob in group:
                target = kit / f"part{part}" / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)
            used += size
            counts[key] = counts.get(key, 0) + 1
    counts.setdefault(FIRST_PARTS, part)
    (kit / "part1" / "counts.json").write_text(json.dumps(counts, indent=1) + "\n")
    if not wheels:
        return part
    wheel_dir = kit.parent / "wheels"
    wheel_dir.mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
         "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
         "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(wheel_dir), *WHEELS],
        check=True,
    )  # fmt: skip
    for folder in [wheel_dir, *sorted(kit.iterdir())]:
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"{folder}: {size / 1e6:.1f} MB")
    print(f"{part} parts; counts {counts}")
    relative = kit.relative_to(REPO).as_posix()
    plans = {"train": ((counts[FIRST_PARTS], '"bash tools/gpu_train.sh SECONDS configs/rain100l-cpu.yaml"'),
                       (part, '"bash tools/gpu_train.sh SECONDS CONFIG ..."')),
             "eval": ((part, '"YOUR COMMAND (sian eval, sian bench)"'),)}  # fmt: skip
    for last, command in plans[name]:
        print(f"for {command}, device calls back to back (each call's carried files stay for the next):")
        print(f'  0. carry {json.dumps([wheel_dir.relative_to(REPO).as_posix()])}, command "true"')
        for index in range(1, last + 1):
            now = command if index == last else '"true"'
            print(f"  {index}. carry {json.dumps([f'{relative}/part{index}'])}, command {now}")
    return part


def unpack(destination: Path, parts: list[Path]) -> None:
    counts: dict[str, int] = {}
    expected = None
    for part in parts:
        if (part / "counts.json").exists():
            expected = json.loads((part / "counts.json").read_text())
        for packed in sorted(p for p in part.rglob("*") if p.is_file() and p.name != "counts.json"):
            relative = packed.relative_to(part).as_posix()
            dataset = dataset_of(relative)
            if dataset in PAIRED:
                if not relative.endswith(".clean.webp"):
                    continue  # the rainy half is read with its clean half
                clean_name = relative.removesuffix(".clean.webp")
                rain_file = part / f"{clean_name}.rain.xz"
                clean, rainy, rainy_name = _decode(packed.read_bytes(), rain_file.read_bytes())
                for target, image in ((destination / clean_name, clean), (destination / dataset / rainy_name, rainy)):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(image).save(target, compress_level=1)
            else:
                target = destination / relative.removesuffix(".xz")
                target.parent.mkdir(parents=True, exist_ok=True)
                blob = packed.read_bytes()
                target.write_bytes(lzma.decompress(blob) if relative.endswith(".xz") else blob)
            counts[dataset] = counts.get(dataset, 0) + 1
    print(f"unpacked into {destination}: {counts}")
    if expected is None:
        raise SystemExit("no counts.json: carry part1 (it lists what every dataset should hold)")
    # A dataset may stay behind whole (a short lease that trains only the Rain100L run carries fewer parts),
    # never in part: a missing part would otherwise train on a silently smaller dataset.
    expected.pop(FIRST_PARTS, None)
    partial = {k: f"{counts[k]} of {v}" for k, v in expected.items() if 0 < counts.get(k, 0) != v}
    if partial:
        raise SystemExit(f"incomplete kit: {partial} files; carry every part that holds them (see gpu_train.sh)")
    absent = [k for k in expected if k not in counts]
    if absent:
        print(f"not carried (runs that need them will stop): {absent}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["pack"] and sys.argv[2:3] in ([], ["train"], ["eval"]):
        from sian.data import shared_folder

        # Every call sends the working tree too (tracked and untracked-not-ignored files): parts fill the rest.
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                                capture_output=True, check=True).stdout.split(b"\0")  # fmt: skip
        files = [REPO / name.decode() for name in listed if name]
        tree = sum(path.stat().st_size for path in files if path.is_file())
        room = CALL_BYTES - tree  # the wheels travel in a call of their own
        if room < 5_000_000:
            raise SystemExit(f"the working tree ({tree / 1e6:.0f} MB) leaves no room in a device call for data")
        name = (sys.argv[2:3] or ["train"])[0]
        pack(shared_folder(REPO.parent / "shared"), BUILD / name, part_bytes=min(PART_BYTES, room), name=name)
    elif sys.argv[1:2] == ["unpack"] and len(sys.argv) > 3:
        unpack(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
    else:
        raise SystemExit(__doc__)
