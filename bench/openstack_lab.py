"""Cold start of the lab's OpenStack with its seven clouds, and its resident memory.

Usage (as root):
    python bench/openstack_lab.py [--json]

Starts a private lab with the seven built-in OpenStack sites (on addresses of its own
where another lab runs): from `interlock lab up` until every site answers, which
includes starting MariaDB, RabbitMQ, Keystone, Placement, Glance, Nova and Neutron and
creating each cloud's project, networks, routers, flavors and images. Memory is the sum
of VmRSS over the lab's processes other than the lab process itself (no nodes run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from interlock_lab import labdir
from lablib import OPENSTACK, print_figures, private_lab


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    start = time.monotonic()
    with private_lab(OPENSTACK) as (work, lab):
        cold = time.monotonic() - start
        status = lab.status()
        pids = [p for p in labdir.leftover_processes(work / "lab") if p != status["pid"]]
        memory = sum(rss_mib(p) for p in pids)
        phases = status["sites"][OPENSTACK[0]].get("openstack_start_seconds")
    figures: dict[str, Any] = {
        "clouds": len(OPENSTACK),
        "cold_start_seconds": round(cold, 1),
        "openstack_phases_seconds": phases,
        "openstack_processes": len(pids),
        "openstack_rss_mib": round(memory),
    }
    print_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
