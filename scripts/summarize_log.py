"""Print the validation records of a training run's log.jsonl.  Usage: python scripts/summarize_log.py RUN/log.jsonl"""

import json
import sys

with open(sys.argv[1]) as f:
    for line in f:
        record = json.loads(line)
        if "val_psnr" in record:
            print(
                f"step {record['step']:5d}: synthetic validation Y-PSNR {record['val_psnr']:.3f} dB "
                f"(rainy input {record['val_input_psnr']:.3f}), SSIM {record['val_ssim']:.4f}"
            )
