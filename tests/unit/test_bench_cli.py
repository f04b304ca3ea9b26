"""The start-up benchmark still runs (figures are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench" / "cli.py"


def test_cli_bench_times_each_command() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--runs", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 4
