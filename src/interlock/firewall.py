"""Firewalls as the clouds have them: security groups (EC2, OpenStack) and firewall rules
(GCE), read into one typed form, and the one question interlock asks of them: does this
node admit TCP on a port from the operator's address?

Providers map their API's rules to `Ingress`; the decision (`admits`) and the group
interlock makes when the answer is no (`wanted`) are the same for every cloud.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Literal

from interlock.model import Frozen

SSH = 22
Protocol = Literal["tcp", "udp", "icmp", "all"]
ANYWHERE = ipaddress.IPv4Network("0.0.0.0/0")


class Ingress(Frozen):
    """One inbound rule. `sources` None means members of a group (never the operator's
    address); `ports` None means every port."""

    protocol: Protocol
    ports: tuple[int, int] | None = None
    sources: tuple[ipaddress.IPv4Network, ...] | None = ()

    def covers(self, port: int, source: ipaddress.IPv4Network) -> bool:
        if self.protocol not in ("tcp", "all") or self.sources is None:
            return False
        if self.ports is not None and not self.ports[0] <= port <= self.ports[1]:
            return False
        return any(source.subnet_of(s) for s in self.sources)


class Firewall(Frozen):
    """What a node's groups say, as read from the site's API. `enforced` False: the site
    filters nothing (no firewall API, or port security off)."""

    enforced: bool = True
    groups: tuple[str, ...] = ()
    rules: tuple[Ingress, ...] = ()

    def admits(self, port: int, sources: list[ipaddress.IPv4Network]) -> bool:
        """Every address of every source may open TCP `port`."""
        if not self.enforced:
            return True
        return all(any(r.covers(port, s) for r in self.rules) for s in sources)


def group_name(deployment: str) -> str:
    """The group interlock makes for a deployment's nodes on a site."""
    return f"interlock-{deployment}"


def operator_sources(
    configured: list[ipaddress.IPv4Network], public_ip: str
) -> list[ipaddress.IPv4Network]:
    """Where SSH comes from: the sites file's `ssh_from`, or else the address this host
    sends from towards the node (the route's source address; behind NAT, configure it)."""
    if configured:
        return configured
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((public_ip, SSH))  # UDP: no packet is sent, the route is looked up
        here = s.getsockname()[0]
    return [ipaddress.IPv4Network(f"{here}/32")]


def shown(sources: list[ipaddress.IPv4Network]) -> str:
    return ", ".join(str(s) for s in sources)
