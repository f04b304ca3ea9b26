"""The lab: its emulated sites, their nodes and the machinery under them, on one event loop.

The lab process (interlock_lab.daemon) makes one and runs it; its control API
(interlock_lab.control) reads it. Everything a lab's sites share (the runtime, the
ledger, the one OpenStack, the addresses claimed on the machine) is held here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
import yaml

from interlock.config import SitesFile
from interlock_lab import claims, labdir
from interlock_lab.claims import LabAddresses
from interlock_lab.emulators.base import EmulatedSite, SiteContext
from interlock_lab.ledger import Ledger
from interlock_lab.runtime import Runtime
from interlock_lab.sitefile import SiteSpec

if TYPE_CHECKING:
    from fastapi import FastAPI

    from interlock_lab.openstack.cloud import OpenstackCloud


def site_kinds() -> dict[str, type[EmulatedSite]]:
    # Imported here: moto and sushy-tools are heavy and only the daemon needs them.
    from interlock_lab.emulators.aws import AwsSite
    from interlock_lab.emulators.gce import GceSite
    from interlock_lab.emulators.metal import MetalSite
    from interlock_lab.emulators.openstack import OpenstackSite

    return {"aws": AwsSite, "gce": GceSite, "metal": MetalSite, "openstack": OpenstackSite}


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the lab tears down first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def claim_addresses(root: Path, specs: list[SiteSpec]) -> claims.Claims:
    """This lab's public pools, and its services' address and epmd port, claimed on the
    machine: as the site files want them, or moved where another lab holds them."""
    wanted = LabAddresses()
    blocks = {f"site:{s.name}": s.public.pool for s in specs}
    ports: dict[str, int] = {}
    if any(s.kind == "openstack" for s in specs):
        blocks["services"] = ipaddress.IPv4Network(f"{wanted.services}/32")
        ports["epmd"] = wanted.epmd_port
    return claims.claim(root, blocks, ports)


class Lab:
    def __init__(
        self,
        root: Path,
        specs: list[SiteSpec],
        held: claims.Claims,
        ready_fd: int | None = None,
    ) -> None:
        self.root = root
        self.ready_fd = ready_fd
        self.wanted = {s.name: s.public.pool for s in specs}
        self.specs = [s.moved_to(held.blocks[f"site:{s.name}"]) for s in specs]
        services = held.blocks.get("services")
        self.addresses = LabAddresses(
            str(services.network_address) if services else LabAddresses.services,
            held.ports.get("epmd", LabAddresses.epmd_port),
        )
        self.started = time.time()
        self.stopping = asyncio.Event()
        self.sites: dict[str, EmulatedSite] = {}
        self.runtime: Runtime
        self.ledger: Ledger
        self.openstack: OpenstackCloud | None = None

    def ready(self, answer: str) -> None:
        """Tell `interlock lab up` (waiting on the ready pipe) how starting went."""
        if self.ready_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, answer.replace("\n", " ").encode() + b"\n")
        os.close(self.ready_fd)
        self.ready_fd = None

    def status(self) -> dict[str, Any]:
        sites: dict[str, Any] = {}
        for spec in self.specs:
            site = self.sites.get(spec.name)
            nodes = [n for n in self.runtime.nodes.values() if n.site == spec.name]
            sites[spec.name] = {
                "kind": spec.kind,
                "description": spec.description,
                "region": spec.region,
                "public_pool": str(spec.public.pool),
                # The site file's pool, where another lab held it (see interlock_lab.claims).
                "public_pool_wanted": (
                    str(self.wanted[spec.name])
                    if self.wanted[spec.name] != spec.public.pool
                    else None
                ),
                "nodes": len(nodes),
                "outstanding": len(self.ledger.entries(spec.name, outstanding=True)),
                **(site.info() if site is not None else {}),
            }
        return {
            "pid": os.getpid(),
            "dir": str(self.root),
            "started": self.started,
            "addresses": dataclasses.asdict(self.addresses),
            "sites": sites,
        }

    def nodes(self) -> list[dict[str, Any]]:
        published: dict[str, list[str]] = {}
        for ip, target in self.runtime.forwarder.addresses().items():
            published.setdefault(target.node_id, []).append(str(ip))
        return [
            {
                "id": n.node_id,
                "site": n.site,
                "network": n.network.name,
                "private_ip": str(n.private_ip),
                "public_ips": sorted(published.get(n.node_id, [])),
                "pid": n.box.pid,
                "init_pid": n.box.init_pid(),
                "dir": str(n.box.dir),
            }
            for n in self.runtime.nodes.values()
        ]

    async def run(self, control: Callable[[Lab], FastAPI]) -> None:
        """Start every site, serve the control API (made by `control`), and run until told
        to stop; then tear down."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.runtime = Runtime(self.root, loop)
        self.ledger = Ledger(self.root / labdir.LEDGER)
        kinds = site_kinds()
        server: _QuietServer | None = None
        serving: asyncio.Task[None] | None = None
        try:
            # Our own listening socket, bound first: its port is known (the OpenStack
            # drivers are told it), and clients queue on it until uvicorn serves.
            api = socket.create_server(("127.0.0.1", 0))
            port = api.getsockname()[1]
            if any(s.kind == "openstack" for s in self.specs):
                from interlock_lab.openstack.cloud import OpenstackCloud

                self.openstack = OpenstackCloud(
                    self.root, self.addresses, f"http://127.0.0.1:{port}"
                )
            for spec in self.specs:
                ctx = SiteContext(
                    spec,
                    self.runtime,
                    self.ledger,
                    self.root / "sites" / spec.name,
                    loop,
                    f"http://127.0.0.1:{port}",
                    self.addresses,
                    self.openstack,
                )
                site = kinds[spec.kind](ctx)  # type: ignore[call-arg]
                self.sites[spec.name] = site
                await asyncio.to_thread(site.start)
            config = uvicorn.Config(control(self), log_level="warning", lifespan="off")
            server = _QuietServer(config)
            serving = asyncio.create_task(server.serve(sockets=[api]))
            sites = SitesFile(sites={n: site.client_config() for n, site in self.sites.items()})
            written = sites.model_dump(mode="json", exclude_defaults=True)
            (self.root / labdir.SITES).write_text(yaml.safe_dump(written))
            labdir.write_state(self.root, {**self.status(), "api": f"http://127.0.0.1:{port}"})
            self.ready("ok")
            await self.stopping.wait()
        finally:
            await self._teardown(server, serving)

    async def _teardown(
        self, server: _QuietServer | None, serving: asyncio.Task[None] | None
    ) -> None:
        (self.root / labdir.STATE).unlink(missing_ok=True)
        for site in self.sites.values():
            await asyncio.to_thread(site.stop)
        await self.runtime.close()
        if server is not None and serving is not None:
            server.should_exit = True
            await serving
        self.ledger.close()
