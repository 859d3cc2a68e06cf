"""Compare a `sian eval --csv` file with the authors' per-image log; exit 1 if any image is off.

Usage: python benchmarks/compare_scores.py RESULTS.csv AUTHORS_LOG.txt [--tolerance-db 0.001]
"""

import argparse
import csv
import re
import sys

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("results")
parser.add_argument("log")
parser.add_argument("--tolerance-db", type=float, default=1e-3)
args = parser.parse_args()

pattern = r"img=(?P<name>[\w-]+)\.\w+,psnr=(?P<psnr>[\d.]+),ssim=(?P<ssim>[\d.]+)"
with open(args.log) as f:
    published = {m["name"]: (float(m["psnr"]), float(m["ssim"])) for m in re.finditer(pattern, f.read())}
with open(args.results, newline="") as f:
    rows = list(csv.DictReader(f))
missing = sorted(set(published) - {r["name"] for r in rows})
dpsnr = {r["name"]: abs(float(r["psnr"]) - published[r["name"]][0]) for r in rows if r["name"] in published}
dssim = {r["name"]: abs(float(r["ssim"]) - published[r["name"]][1]) for r in rows if r["name"] in published}
worst = max(dpsnr, key=dpsnr.get)
print(f"{len(dpsnr)} images compared with {args.log}")
print(f"largest PSNR difference: {dpsnr[worst]:.6f} dB ({worst}); largest SSIM difference: {max(dssim.values()):.2e}")
off = [n for n, d in dpsnr.items() if d > args.tolerance_db]
if missing or off:
    print(f"FAIL: {len(off)} image(s) off by more than {args.tolerance_db} dB: {off}; missing: {missing}")
    sys.exit(1)
print(f"OK: every image within {args.tolerance_db} dB")
