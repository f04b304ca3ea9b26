"""The node benchmark still runs end to end (figures are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench" / "nodes.py"


def test_node_bench_boots_and_cleans_up() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--nodes", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["ready"], report["failures"], report["leftover_processes"]) == (4, {}, 0)
    assert report["mean_pss_mib_per_node"] > 0
