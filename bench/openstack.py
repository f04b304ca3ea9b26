"""Cold start of the lab's OpenStack with its seven clouds, and its resident memory.

Usage (as root):
    python bench/openstack.py [--json]

Starts a private lab with the seven built-in OpenStack sites (pools moved to 127.17x,
control address 127.170.0.1): from `interlock lab up` until every site answers, which
includes starting MariaDB, RabbitMQ, Keystone, Placement, Glance, Nova and Neutron and
creating each cloud's project, networks, routers, flavors and images. Memory is the sum
of VmRSS over the lab's processes other than the lab process itself (no nodes run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from interlock_lab import labdir
from interlock_lab.client import LabClient, resolve_sites
from interlock_lab.sitefile import builtin_sites

CLOUDS = ("os-aws-like", "os-tenant", "os-misnamed", "os-unlabelled", "os-logins",
          "os-halfdone", "os-nofloat")  # fmt: skip


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="interlock-bench-os-", dir="/var/tmp"))
    os.environ["INTERLOCK_LAB_OPENSTACK_ADDRESS"] = "127.170.0.1"
    try:
        files = []
        for name in CLOUDS:
            path = work / f"{name}.yaml"
            path.write_text(builtin_sites()[name].read_text().replace("127.6", "127.17"))
            files.append(path)
        lab = LabClient(work / "lab")
        start = time.monotonic()
        lab.up(resolve_sites([], files))
        cold = time.monotonic() - start
        try:
            status = lab.status()
            pids = [p for p in labdir.leftover_processes(work / "lab") if p != status["pid"]]
            memory = sum(rss_mib(p) for p in pids)
            phases = status["sites"][CLOUDS[0]].get("openstack_start_seconds")
        finally:
            lab.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures: dict[str, Any] = {
        "clouds": len(CLOUDS),
        "cold_start_seconds": round(cold, 1),
        "openstack_phases_seconds": phases,
        "openstack_processes": len(pids),
        "openstack_rss_mib": round(memory),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key.replace('_', ' '):28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
