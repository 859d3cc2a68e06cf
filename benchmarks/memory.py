"""Peak resident memory of `sian derain` on a large photo (default 4000x3000, 12 MP).

Writes a synthetic test photo (smooth gradients with bright streaks; no third-party data), derains it
in a child process with the named model (random weights of the registered variant when no weights are
installed: the memory and time do not depend on the weights), and reports the child's peak RSS.

Usage: python benchmarks/memory.py [--width 4000 --height 3000] [--variant sian] [--max-memory-gb 2]
                                        [--precision auto|fp32|bf16]

``--precision`` is passed to `sian derain` (default ``auto``, its own default); the report says what ran.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--variant", default="sian")
    parser.add_argument("--max-memory-gb", type=float, default=2.0)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        y, x = np.mgrid[0 : args.height, 0 : args.width].astype(np.float32)
        photo = np.stack([x / args.width, y / args.height, 0.5 + 0.3 * np.sin(x / 50)], -1) * 200
        photo[:, ::37] += 50
        Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(tmp / "photo.png")
        del photo, x, y

        from sian.models import create_model
        from sian.weights import save_weights

        model = create_model(args.variant)
        weights = save_weights(tmp / "model.safetensors", model, "sian" if "sian" in args.variant else "prenet",
                               model.config)  # fmt: skip
        # The child reports its own VmHWM: getrusage's child maxrss would include this parent's peak.
        child = (
            "import runpy, sys\n"
            "sys.argv = ['sian', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('sian', run_name='__main__')\n"
            "finally:\n    print('VmHWM', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], flush=True)\n"
        )
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", child, "derain", str(tmp / "photo.png"), "-o", str(tmp / "out"),
             "--model", str(weights), "--max-memory-gb", str(args.max_memory_gb), "--precision", args.precision],
            capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"sian derain failed:\n{result.stdout}\n{result.stderr}")
        peak_mb = int(result.stdout.split("VmHWM")[-1].split()[0]) / 1024
        ran = result.stdout.split(f"with {weights} (", 1)[-1].split(")\n", 1)[0]  # derain's summary: what ran
        megapixels = args.width * args.height / 1e6
        print(f"{args.width}x{args.height} ({megapixels:.1f} MP) with {args.variant}, --max-memory-gb "
              f"{args.max_memory_gb}, --precision {args.precision} ({ran}): peak RSS {peak_mb:.0f} MB, "
              f"{seconds:.0f} s, {seconds / megapixels:.1f} s/MP")  # fmt: skip


if __name__ == "__main__":
    main()
