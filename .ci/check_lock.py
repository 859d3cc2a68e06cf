"""Check requirements-lock.txt against an installed environment, without resolving anything.

    python3 .ci/check_lock.py requirements-lock.txt VENV/bin/python [--exact]

Fails when the lock pins a CUDA package (nvidia-*, triton: the lock must hold the CPU build of torch), or when
the environment installed with the lock as constraints holds a distribution the lock does not pin, or at another
version: then pyproject.toml asks for something the lock lacks, and the lock must be compiled again. With
--exact (the test environment, which installs every extra) every pinned distribution must also be installed, so a
pin that nothing needs any more fails too. pip and setuptools are the environment's own tools and not compared.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
NOT_COMPARED = {"pip", "setuptools", "sian-derain"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match:
            found[normalize(match.group(1))] = match.group(2)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock")
    parser.add_argument("python", help="the environment's interpreter")
    parser.add_argument("--exact", action="store_true", help="every pin must be installed too")
    args = parser.parse_args()

    locked = pins(Path(args.lock).read_text())
    problems = [f"the lock pins {name}: it must hold the CPU build of torch and no CUDA package"
                for name in locked if name.startswith("nvidia-") or name == "triton"]  # fmt: skip
    freeze = subprocess.run([args.python, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    installed = {name: version for name, version in pins(freeze).items() if name not in NOT_COMPARED}
    for name, version in sorted(installed.items()):
        if name not in locked:
            problems.append(f"{name}=={version} is installed but not in the lock")
        elif locked[name] != version:
            problems.append(f"{name}=={version} is installed but the lock pins {locked[name]}")
    if args.exact:
        problems += [f"the lock pins {name}, which this environment does not install"
                     for name in sorted(set(locked) - set(installed) - NOT_COMPARED)]  # fmt: skip
    for problem in problems:
        print(f"lock check: {problem}", file=sys.stderr)
    if problems:
        print("compile the lock again (the command is at the top of requirements-lock.txt)", file=sys.stderr)
        return 1
    print(f"lock check: {len(installed)} installed distributions match {args.lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
