"""Lab networks: an L2 segment (a bridge) inside a network namespace of the lab's own.

Each network namespace is anonymous and held by one small process started with
a parent-death signal, so a crash of the lab frees it in the kernel. Nodes join
with a veth pair: one end on the bridge, the other as `eth0` in the node's
namespace holding its private address. Nothing is added to the host namespace,
so the host cannot reach private addresses; the host's routes, sysctls and
interfaces are never touched.

Security groups between nodes are an nftables table of the bridge family in the
segment's namespace (`admit_only`), replaced whole, atomically, at each change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from interlock_lab.fabric import netns
from interlock_lab.fabric.ipam import AddressPool
from interlock_lab.node.sandbox import Sandbox


class NetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class Admit:
    """What may open a TCP connection to a node: from `sources`, to `ports` (None: any)."""

    ports: tuple[int, int] | None
    sources: tuple[ipaddress.IPv4Network, ...]


def ip_batch(ns_fd: int, commands: list[str]) -> None:
    """Run `ip -batch` inside namespace `ns_fd`; fail with ip's own message."""
    with netns.inside(ns_fd):
        done = subprocess.run(
            ["ip", "-batch", "-"],
            input="\n".join(commands) + "\n",
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise NetworkError(f"ip failed: {done.stderr.strip()}")


@dataclass
class LabNetwork:
    name: str
    cidr: ipaddress.IPv4Network
    holder: subprocess.Popen[bytes]
    fd: int
    pool: AddressPool
    _ports: int = 0

    @classmethod
    async def create(cls, name: str, cidr: ipaddress.IPv4Network) -> LabNetwork:
        holder = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--net", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
        )
        host = os.stat(f"/proc/{os.getpid()}/ns/net").st_ino
        fd = -1
        for _ in range(500):  # unshare(2) happens right after exec: a few ms
            try:
                path = f"/proc/{holder.pid}/ns/net"
                if (
                    os.stat(path).st_ino != host
                    and Path(f"/proc/{holder.pid}/exe").resolve().name == "sleep"
                ):
                    fd = netns.open_netns(holder.pid)
                    break
            except OSError:
                pass
            if holder.poll() is not None:
                break
            await asyncio.sleep(0.005)
        if fd < 0:
            holder.kill()
            holder.wait()
            raise NetworkError(f"network {name}: could not create its namespace")
        net = cls(name, cidr, holder, fd, AddressPool(cidr, skip=3))
        ip_batch(fd, ["link set lo up", "link add br0 type bridge", "link set br0 up"])
        return net

    def attach(self, node: Sandbox, address: ipaddress.IPv4Address) -> None:
        """Give `node` an eth0 on this segment holding `address`."""
        self._ports += 1
        veth = f"v{self._ports}"
        ip_batch(
            self.fd,
            [
                f"link add {veth} type veth peer name eth0 netns {node.pid}",
                f"link set {veth} master br0 up",
            ],
        )
        ip_batch(
            node.netns,
            [
                "link set lo up",
                f"addr add {address}/{self.cidr.prefixlen} dev eth0",
                "link set eth0 up",
            ],
        )

    def admit_only(self, admitted: dict[ipaddress.IPv4Address, list[Admit]]) -> None:
        """A TCP connection to an address of `admitted` opens only where one of its entries
        covers the port and the source; other addresses are open. The bridge is filtered
        statelessly (the kernel has no connection tracking for bridges here): a
        connection's first segment (SYN without ACK) is judged, and what follows an
        admitted one passes. UDP and ICMP pass."""
        rules = []
        for address in sorted(admitted):
            for a in admitted[address]:
                if not a.sources:
                    continue
                ports = (
                    "meta l4proto tcp"
                    if a.ports is None
                    else f"tcp dport {a.ports[0]}-{a.ports[1]}"
                )
                sources = ", ".join(str(s) for s in a.sources)
                rules.append(f"ip daddr {address} {ports} ip saddr {{ {sources} }} accept")
            rules.append(f"ip daddr {address} tcp flags & (syn | ack) == syn drop")
        table = "\n".join(
            [
                "table bridge interlock {}",
                "flush table bridge interlock",
                "table bridge interlock {",
                "  chain forward {",
                "    type filter hook forward priority 0; policy accept;",
                *(f"    {r}" for r in rules),
                "  }",
                "}",
            ]
        )
        with netns.inside(self.fd):
            done = subprocess.run(
                ["nft", "-f", "-"], input=table + "\n", capture_output=True, text=True
            )
        if done.returncode != 0:
            raise NetworkError(f"nft failed: {done.stderr.strip()}")

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
