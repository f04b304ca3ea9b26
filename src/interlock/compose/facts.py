"""A node's infrastructure facts as attributes: read once per node (its record, its site,
and the node itself over SSH), and `cluster_address`, the address peers use, decided
from every node's network facts, never guessed by a role."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from interlock.model import NodeFacts

# What a role may list under `facts:` (NodeFacts' fields, and the one decided across nodes).
FACT_NAMES: tuple[str, ...] = (*NodeFacts.model_fields, "cluster_address")

READ = r"""
. /etc/os-release
echo "distro=$ID"
echo "version=$VERSION_ID"
echo "vcpus=$(nproc)"
awk '/^MemTotal:/ {print "memory_kib=" $2}' /proc/meminfo
echo "hostname=$(hostname)"
dev=$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i+1)}')
dev=${dev%%[[:space:]]*}
ip -4 -o addr show ${dev:+dev "$dev"} scope global | awk '{print "address=" $4; exit}'
"""


def parse(text: str, **known: Any) -> NodeFacts:
    """`READ`'s output, with what the record and site say (`known`, which wins: the
    image's distro as the site named it, for one) as NodeFacts."""
    got = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "address" not in got:
        raise ValueError("the node has no IPv4 address on a network")
    iface = ipaddress.IPv4Interface(got["address"])
    read = {
        "distro": got.get("distro", "unknown").lower(),
        "version": got.get("version", ""),
        "vcpus": int(got.get("vcpus", "1")),
        "memory_mib": int(got.get("memory_kib", "0")) // 1024,
        "hostname": got.get("hostname", ""),
        "private_address": str(iface.ip),
        "network_cidr": str(iface.network),
    }
    return NodeFacts.model_validate({**read, **{k: v for k, v in known.items() if v}})


def cluster_address(node: NodeFacts, peers: Sequence[NodeFacts]) -> tuple[str, str]:
    """The address `node`'s peers reach it at, and why: its private address where every
    node of the deployment is on the same network of the same site, else its public one."""
    apart = [p.node for p in peers if (p.site, p.network_cidr) != (node.site, node.network_cidr)]
    if not apart:
        return node.private_address, f"private: every node on {node.site} {node.network_cidr}"
    return node.public_address, f"public: {apart[0]} is on another network"


def attributes(node: NodeFacts, peers: Sequence[NodeFacts]) -> dict[str, Any]:
    """Every fact of `node` by its attribute name."""
    return {**node.model_dump(), "cluster_address": cluster_address(node, peers)[0]}
