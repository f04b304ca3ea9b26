"""Lab networks: an L2 segment (a bridge) inside a network namespace of the lab's own.

Each network namespace is anonymous and held by one small process started with
a parent-death signal, so a crash of the lab frees it in the kernel. Nodes join
with a veth pair: one end on the bridge, the other as `eth0` in the node's
namespace holding its private address. Nothing is added to the host namespace,
so the host cannot reach private addresses; the host's routes, sysctls and
interfaces are never touched.

Security groups between nodes are an nftables table of the bridge family in the
segment's namespace: a chain per guarded address, reached through a verdict map, and
a named set per group holding its members' addresses. `admit_only` replaces it whole,
atomically; `guard` and `unguard` change one address (its chain, map entry and set
elements), so a node joining a group of a thousand costs what it costs in a group of two.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from interlock_lab.fabric import netns
from interlock_lab.fabric.ipam import AddressPool
from interlock_lab.node.sandbox import Sandbox


class NetworkError(RuntimeError):
    pass


TABLE = "bridge interlock"


@dataclass(frozen=True)
class Admit:
    """What may open a TCP connection to a node: from `sources`, and from the members of
    `group` if one is named, to `ports` (None: any)."""

    ports: tuple[int, int] | None
    sources: tuple[ipaddress.IPv4Network, ...]
    group: str | None = None


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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The filter as applied: what each guarded address admits, the groups of each member.
    _admits: dict[ipaddress.IPv4Address, tuple[Admit, ...]] = field(default_factory=dict)
    _groups: dict[ipaddress.IPv4Address, tuple[str, ...]] = field(default_factory=dict)
    _sets: dict[str, str] = field(default_factory=dict)  # group -> its nft set's name
    _filtered: bool = False  # the table is in place (made by the first change)

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
        with self._lock:  # nodes attach from worker threads at once
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

    def admit_only(
        self,
        admitted: dict[ipaddress.IPv4Address, list[Admit]],
        members: Mapping[str, Iterable[ipaddress.IPv4Address]] | None = None,
    ) -> None:
        """A TCP connection to an address of `admitted` opens only where one of its entries
        covers the port and the source; other addresses are open. An entry naming a group
        admits its `members`. The bridge is filtered statelessly (the kernel has no
        connection tracking for bridges here): a connection's first segment (SYN without
        ACK) is judged, and what follows an admitted one passes. UDP and ICMP pass."""
        groups: dict[ipaddress.IPv4Address, list[str]] = {}
        for group, addresses in (members or {}).items():
            for address in addresses:
                groups.setdefault(address, []).append(group)
        self._admits = {a: tuple(e) for a, e in admitted.items()}
        self._groups = {a: tuple(g) for a, g in groups.items()}
        self._replace()

    def guard(
        self, address: ipaddress.IPv4Address, admits: list[Admit], groups: Iterable[str]
    ) -> None:
        """Filter `address` as `admits` say (see `admit_only`); it is a member of `groups`.
        Only this address's chain, map entry and set elements change."""
        entries, joined = tuple(admits), tuple(dict.fromkeys(groups))
        was = self._groups.get(address, ())
        named = {*joined, *(a.group for a in entries if a.group is not None)}
        chain = _chain(address)
        commands = [f"add set {TABLE} {self._set(g)} {{ type ipv4_addr; }}" for g in sorted(named)]
        commands += [self._element("delete", g, address) for g in was if g not in joined]
        commands += [self._element("add", g, address) for g in joined if g not in was]
        commands += [f"add chain {TABLE} {chain}", f"flush chain {TABLE} {chain}"]
        commands += [f"add rule {TABLE} {chain} {r}" for r in self._rules(entries)]
        if address not in self._admits:
            commands.append(f"add element {TABLE} guarded {{ {address} : jump {chain} }}")
        self._admits[address], self._groups[address] = entries, joined
        self._apply(commands)

    def unguard(self, address: ipaddress.IPv4Address) -> None:
        """`address` open again, and a member of no group."""
        if address not in self._admits and address not in self._groups:
            return
        commands = [self._element("delete", g, address) for g in self._groups.pop(address, ())]
        if self._admits.pop(address, None) is not None:
            commands.append(f"delete element {TABLE} guarded {{ {address} }}")
            commands.append(f"flush chain {TABLE} {_chain(address)}")
        self._apply(commands)

    def _apply(self, commands: list[str]) -> None:
        """Bring the table to the state recorded: by `commands` (one nft transaction), or,
        if the table is not there yet or not what they expect, by writing it whole."""
        if self._filtered:
            try:
                _nft(self.fd, "\n".join(commands))
                return
            except NetworkError:
                pass
        self._replace()

    def _replace(self) -> None:
        """Write the whole table as recorded, atomically."""
        members: dict[str, list[ipaddress.IPv4Address]] = {}
        for address in sorted(self._groups):
            for g in self._groups[address]:
                members.setdefault(g, []).append(address)
        for entries in self._admits.values():
            for a in entries:
                if a.group is not None:
                    members.setdefault(a.group, [])
        lines = [f"table {TABLE} {{}}", f"delete table {TABLE}", f"table {TABLE} {{"]
        for g, addresses in members.items():
            elements = f" elements = {{ {', '.join(map(str, addresses))} }};" if addresses else ""
            lines.append(f"  set {self._set(g)} {{ type ipv4_addr;{elements} }}")
        guarded = sorted(self._admits)
        for address in guarded:
            lines.append(f"  chain {_chain(address)} {{")
            lines += [f"    {r}" for r in self._rules(self._admits[address])]
            lines.append("  }")
        jumps = ", ".join(f"{a} : jump {_chain(a)}" for a in guarded)
        lines += [
            "  map guarded {",
            "    type ipv4_addr : verdict;",
            *([f"    elements = {{ {jumps} }}"] if jumps else []),
            "  }",
            "  chain forward {",
            "    type filter hook forward priority 0; policy accept;",
            "    ip daddr vmap @guarded",
            "  }",
            "}",
        ]
        self._filtered = False  # until written: a failed write is retried whole next time
        _nft(self.fd, "\n".join(lines))
        self._filtered = True

    def _rules(self, admits: Iterable[Admit]) -> list[str]:
        """One address's chain: its admitted sources, then the drop of any other SYN."""
        rules = []
        for a in admits:
            if not a.sources and a.group is None:
                continue
            ports = "meta l4proto tcp"
            if a.ports is not None:
                ports = f"tcp dport {a.ports[0]}-{a.ports[1]}"
            if a.sources:
                sources = ", ".join(str(s) for s in a.sources)
                rules.append(f"{ports} ip saddr {{ {sources} }} accept")
            if a.group is not None:
                rules.append(f"{ports} ip saddr @{self._set(a.group)} accept")
        rules.append("tcp flags & (syn | ack) == syn drop")
        return rules

    def _element(self, verb: str, group: str, address: ipaddress.IPv4Address) -> str:
        return f"{verb} element {TABLE} {self._set(group)} {{ {address} }}"

    def _set(self, group: str) -> str:
        """The nft name of `group`'s set (group ids are not all valid nft names)."""
        return self._sets.setdefault(group, f"g{len(self._sets)}")

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _chain(address: ipaddress.IPv4Address) -> str:
    return "a_" + str(address).replace(".", "_")


def _nft(ns_fd: int, text: str) -> None:
    """Run one nft transaction inside namespace `ns_fd`; fail with nft's own message."""
    with netns.inside(ns_fd):
        done = subprocess.run(["nft", "-f", "-"], input=text + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise NetworkError(f"nft failed: {done.stderr.strip()}")
