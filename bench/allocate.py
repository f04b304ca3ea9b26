"""Allocate N nodes on one lab site end to end (the eight steps), and print figures.

Usage (as root):
    python bench/allocate.py [--nodes 100] [--site aws] [--json]
    python bench/allocate.py --site os-tenant --nodes 20     # an OpenStack cloud
    python bench/allocate.py --node-key key-pair             # aws: a key pair per node

Starts a private lab (the built-in site, in a lab of its own, its images on the minimal
init), runs `interlock up` in-process with a fresh INTERLOCK_HOME, and prints wall
seconds, nodes per second, the API calls the allocation made per node and by action,
`down`'s calls apart, and the peak memory of the interlock process. On aws the calls are
EC2's actions: RunInstances alone where the key goes in user data (the default), or the
three each node needs with per-node key pairs (`--node-key key-pair`: ImportKeyPair,
RunInstances, DeleteKeyPair), and the describes every pending node of the site shares. On
an OpenStack cloud they are the HTTP requests to its services (Nova, Neutron, Glance,
Keystone), ids folded into `{id}`. Everything is released and the lab stopped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import yaml

from interlock_lab import labdir
from lablib import print_figures, private_lab

# What per-node keys need of each API kind, node by node; every describe is shared.
PER_NODE = {
    "aws": ("ImportKeyPair", "RunInstances", "DeleteKeyPair"),  # with user data: RunInstances
    "openstack": ("POST /os-keypairs", "POST /servers", "DELETE /os-keypairs/{id}"),
}
ID = re.compile(r"/(?:[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{32}|interlock-[^/?]+|i-[0-9a-f]+)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--site", default="aws", help="a built-in lab site (aws, os-tenant, …)")
    parser.add_argument(
        "--node-key", choices=("key-pair", "user-data"), help="an aws site's node_key setting"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with private_lab([args.site], minimal_init=True) as (work, _):
        sites = yaml.safe_load((work / "lab" / labdir.SITES).read_text())
        os.environ["INTERLOCK_HOME"] = str(work / "home")
        sites["sites"][args.site]["limits"] = {"concurrency": args.nodes, "rate": 1000}
        if args.node_key:
            sites["sites"][args.site]["node_key"] = args.node_key
        (work / "sites.yaml").write_text(yaml.safe_dump(sites))
        os.environ["INTERLOCK_SITES"] = str(work / "sites.yaml")
        figures = asyncio.run(run(args.site, args.nodes))
    print_figures(figures, args.json)
    return 0 if figures["ready"] == args.nodes else 1


def counting(provider: Any, calls: Counter[str]) -> str:
    """Count every API call `provider` makes into `calls`; returns the API kind."""
    if hasattr(provider, "ec2"):

        def count(model: Any, **_: Any) -> None:
            calls[model.name] += 1

        provider.ec2.meta.events.register("before-call", count)
        return "aws"
    session = provider.conn.session
    request = session.request

    def counted(url: str, method: str, *a: Any, **kw: Any) -> Any:
        path = "/" + (urlsplit(url).path if "://" in url else url).lstrip("/")
        path = re.sub(r"^/(?:v[0-9.]+|compute|image|identity|networking)(?:/v[0-9.]+)?", "", path)
        path = re.sub(r"^/[0-9a-f]{32}", "", path)  # Nova's project prefix
        calls[f"{method.upper()} {ID.sub('/{id}', path)}"] += 1
        return request(url, method, *a, **kw)

    session.request = counted
    return "openstack"


async def run(site: str, n: int) -> dict[str, Any]:
    from interlock.engine import open_engine
    from interlock.model import Traits
    from interlock.services import deploy

    e = open_engine()
    calls: Counter[str] = Counter()
    kind = counting(e.provider(site), calls)
    start = time.monotonic()
    nodes = await deploy.up(e, "bench", n, [site], Traits(), lambda _: None)
    wall = time.monotonic() - start
    allocation = Counter(calls)
    calls.clear()
    await deploy.down(e, "bench")
    ready = sum(1 for x in nodes if x.status == "ready")
    per_node = sum(allocation[a] for a in PER_NODE[kind])
    return {
        "site": site,
        "node_key": getattr(e.sites.sites[site], "node_key", None),
        "nodes": n,
        "ready": ready,
        "wall_seconds": round(wall, 2),
        "nodes_per_second": round(ready / wall, 2),
        "api_calls_per_node": round(allocation.total() / n, 2),
        "api_calls_each_node_needs": round(per_node / n, 2),
        "api_calls_shared_by_the_site": allocation.total() - per_node,
        "api_calls_by_action": dict(allocation.most_common()),
        "down_api_calls_per_node": round(calls.total() / n, 2),
        "peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "failures": sorted({x.error or "" for x in nodes if x.status != "ready"}),
    }


if __name__ == "__main__":
    sys.exit(main())
