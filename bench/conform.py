"""`interlock conform` over a lab's sites: seconds per site, and for the whole run.

Usage (as root):
    python bench/conform.py [--json]

Starts a private lab with the built-in aws and metal sites and the seven OpenStack
clouds (on addresses of their own where another lab runs), then times `interlock conform` over all
of them (baseline aws; sites run concurrently): each site's seconds from request to
release, and the wall time of the whole command, including start-up and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from interlock_lab import labdir
from lablib import OPENSTACK, print_figures, private_lab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_lab(["aws", "metal", *OPENSTACK]) as (work, _):
        env = {**os.environ, "INTERLOCK_HOME": str(work / "home"),
               "INTERLOCK_SITES": str(work / "lab" / labdir.SITES)}  # fmt: skip
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "interlock", "conform", "run", "--json"],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        wall = time.monotonic() - start
    report = json.loads(done.stdout)
    per_site = {s: d["seconds"] for s, d in report["sites"].items()}
    figures: dict[str, Any] = {
        "sites": len(per_site),
        "wall_seconds": round(wall, 1),
        "slowest_site_seconds": max(per_site.values()),
        "per_site_seconds": per_site,
        "site_verdicts": {s: d["verdict"] for s, d in report["sites"].items()},
    }
    print_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
