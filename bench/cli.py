"""Start-up time of the interlock command: a few commands, each run as a whole process.

Usage:
    python bench/cli.py [--runs 10] [--json]

Times `interlock version`, `interlock --help`, `interlock ls` and `interlock sites` (on a
small sites file of its own, in a fresh INTERLOCK_HOME; nothing is contacted) and prints
each one's minimum, median and maximum wall seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lablib import print_figures

COMMANDS = (["version"], ["--help"], ["ls"], ["sites"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    interlock = Path(sys.executable).parent / "interlock"
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as work:
        sites = Path(work) / "sites.yaml"
        sites.write_text("sites: {aws: {provider: aws, region: us-east-1}}\n")
        env = {**os.environ, "INTERLOCK_HOME": f"{work}/home", "INTERLOCK_SITES": str(sites)}
        for command in COMMANDS:
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                subprocess.run([str(interlock), *command], env=env, capture_output=True, check=True)
                times.append(time.perf_counter() - start)
            figures[f"interlock {' '.join(command)} (min/median/max s)"] = (
                f"{min(times):.3f} / {statistics.median(times):.3f} / {max(times):.3f}"
            )
    print_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
