"""The project's one training queue: runs the `sian train` lines of a queue file in order, each to its end.

    nohup .venv/bin/python tools/train_queue.py configs/train-queue.txt >> build/train-queue.log 2>&1 &
    pkill -TERM -f tools/train_queue.py      # pause: the running step and a checkpoint finish, then both exit

Each line of the queue file is a config and its overrides, as `sian train` takes them (`#` starts a comment). A
run whose `train.out_dir` holds a `state.pt` is resumed, any other started; one that ended (finished, or stopped
by its rule) returns at once when resumed, and one whose rule ended it is skipped even without its state, so
the queue moves on to the next line. SIGTERM or SIGINT pauses the queue: the running `sian train` gets the
signal, checkpoints and exits, and the queue exits with it; run the same command to go on. A run that fails
stops the queue (its error is in the log).
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path

from sian.training import load_config
from sian.training.stopping import read_verdict

SIAN = str(Path(sys.executable).with_name("sian"))


def read_queue(path: Path) -> list[list[str]]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [shlex.split(line) for line in lines if line]


def main() -> int:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for config, *overrides in read_queue(Path(sys.argv[1])):
        out_dir = Path(load_config(config, overrides).train.out_dir)
        verdict = read_verdict(out_dir)
        if verdict:  # ended by its rule: its weights may have shipped and its state gone
            print(f"queue: {out_dir} has ended ({verdict}); next", flush=True)
            continue
        resume = ["--resume"] if (out_dir / "state.pt").is_file() else []
        command = [SIAN, "train", config, *overrides, *resume]
        print("queue:", shlex.join(command), flush=True)
        child = subprocess.Popen(command)
        code = child.wait()
        if code != 0:
            print(f"queue: paused or failed with exit status {code}; run the same command to go on", flush=True)
            return code
    print("queue: every run has ended", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
