"""The lab's machinery on one event loop: nodes, networks and public addresses.

Emulated cloud APIs (moto's and sushy's request threads) call in through
`Runtime.call`, which runs the work on the loop's thread. That thread lives as
long as the lab, which matters: nodes are spawned with a parent-death signal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from interlock_lab.fabric.forward import Forwarder, Guard, Target
from interlock_lab.fabric.network import LabNetwork
from interlock_lab.node import cgroups, limits, sandbox
from interlock_lab.node.initbin import init_binary
from interlock_lab.node.rootfs import FirstBoot

T = TypeVar("T")
CALL_TIMEOUT = 120.0


@dataclass
class Node:
    node_id: str
    site: str
    network: LabNetwork
    private_ip: ipaddress.IPv4Address
    box: sandbox.Sandbox


class Runtime:
    def __init__(self, run_dir: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.run_dir = run_dir
        self.loop = loop
        self.init = init_binary(run_dir / "bin")
        limits.raise_limits()  # systemd nodes share root's inotify allowance with the host
        # systemd nodes' cgroup directories go here (made with the first one).
        self.cgroup = cgroups.lab_cgroup(run_dir)
        self.nodes: dict[str, Node] = {}
        self.networks: dict[str, LabNetwork] = {}
        self.forwarder = Forwarder()
        self._lock = asyncio.Lock()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the lab's loop from another thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(CALL_TIMEOUT)

    def node_dir(self, node_id: str) -> Path:
        return self.run_dir / "nodes" / node_id

    async def network(self, key: str, cidr: ipaddress.IPv4Network) -> LabNetwork:
        """The lab network `key`, created on first use."""
        async with self._lock:
            net = self.networks.get(key)
            if net is None:
                net = await LabNetwork.create(key, cidr)
                self.networks[key] = net
            return net

    async def boot(
        self,
        node_id: str,
        site: str,
        network: LabNetwork,
        private_ip: ipaddress.IPv4Address,
        first_boot: FirstBoot,
    ) -> Node:
        """Start a node (its disk is kept from an earlier boot, if any)."""
        if node_id in self.nodes:
            return self.nodes[node_id]
        network.pool.take(private_ip)
        try:
            box = await sandbox.start(
                self.init, self.node_dir(node_id), node_id, first_boot, self.cgroup
            )
        except Exception:
            network.pool.give_back(private_ip)
            raise
        try:
            # `ip` runs: in a worker thread, so other boots and connections go on meanwhile.
            await asyncio.to_thread(network.attach, box, private_ip)
        except Exception:
            box.stop()
            network.pool.give_back(private_ip)
            raise
        node = Node(node_id, site, network, private_ip, box)
        self.nodes[node_id] = node
        return node

    async def halt(self, node_id: str, wipe: bool) -> None:
        """Stop a node; with `wipe`, its disk goes too (terminate vs stop)."""
        node = self.nodes.pop(node_id, None)
        if node is not None:
            await self.forwarder.unpoint_node(node_id)
            node.box.stop()
            node.network.pool.give_back(node.private_ip)
        if wipe:
            await asyncio.to_thread(_remove, self.node_dir(node_id))

    async def publish(
        self,
        ip: ipaddress.IPv4Address,
        ports: list[int],
        node_id: str,
        guard: Guard | None = None,
    ) -> None:
        """Forward `ip`'s `ports` to the node; with `guard`, only what it admits."""
        node = self.nodes[node_id]
        target = Target(node_id, node.box.netns, node.private_ip, guard)
        await self.forwarder.point(ip, ports, target)

    async def unpublish(self, ip: ipaddress.IPv4Address) -> None:
        await self.forwarder.unpoint(ip)

    async def close(self) -> None:
        await self.forwarder.close()
        for node_id in list(self.nodes):
            await self.halt(node_id, wipe=True)
        for net in self.networks.values():
            net.close()
        self.networks.clear()
        if self.cgroup is not None:
            await asyncio.to_thread(cgroups.remove, self.cgroup)
        await asyncio.to_thread(_remove, self.run_dir / "nodes")


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
