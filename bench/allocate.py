"""Allocate N nodes on a lab aws site end to end (the eight steps), and print figures.

Usage (as root):
    python bench/allocate.py [--nodes 100] [--json]

Starts a private lab (the built-in aws site, in a lab of its own),
runs `interlock up` in-process with a fresh INTERLOCK_HOME, and prints wall
seconds, nodes per second, the EC2 API calls the allocation made per node (and by
action: the three each node needs, ImportKeyPair, RunInstances and DeleteKeyPair, and
the describes every pending node of the site shares), `down`'s calls apart, and the
peak memory of the interlock process. Everything is released and the lab stopped
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from collections import Counter
from typing import Any

import yaml

from lablib import print_figures, private_aws_lab

# What per-node key pairs need of EC2, node by node; every describe is shared by the site.
PER_NODE = ("ImportKeyPair", "RunInstances", "DeleteKeyPair")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with private_aws_lab() as (work, sites):
        os.environ["INTERLOCK_HOME"] = str(work / "home")
        sites["sites"]["aws"]["limits"] = {"concurrency": args.nodes, "rate": 1000}
        (work / "sites.yaml").write_text(yaml.safe_dump(sites))
        os.environ["INTERLOCK_SITES"] = str(work / "sites.yaml")
        figures = asyncio.run(run(args.nodes))
    print_figures(figures, args.json)
    return 0 if figures["ready"] == args.nodes else 1


async def run(n: int) -> dict[str, Any]:
    from interlock.engine import open_engine
    from interlock.model import Traits
    from interlock.services import deploy

    e = open_engine()
    calls: Counter[str] = Counter()
    provider: Any = e.provider("aws")

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    provider.ec2.meta.events.register("before-call", count)
    start = time.monotonic()
    nodes = await deploy.up(e, "bench", n, ["aws"], Traits(), lambda _: None)
    wall = time.monotonic() - start
    allocation = Counter(calls)
    calls.clear()
    await deploy.down(e, "bench")
    ready = sum(1 for x in nodes if x.status == "ready")
    per_node = sum(allocation[a] for a in PER_NODE)
    return {
        "nodes": n,
        "ready": ready,
        "wall_seconds": round(wall, 2),
        "nodes_per_second": round(ready / wall, 2),
        "ec2_calls_per_node": round(allocation.total() / n, 2),
        "ec2_calls_each_node_needs": round(per_node / n, 2),
        "ec2_calls_shared_by_the_site": allocation.total() - per_node,
        "ec2_calls_by_action": dict(allocation.most_common()),
        "down_ec2_calls_per_node": round(calls.total() / n, 2),
        "peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "failures": sorted({x.error or "" for x in nodes if x.status != "ready"}),
    }


if __name__ == "__main__":
    sys.exit(main())
