"""The lab's one OpenStack as its sites share it: started for the first openstack site,
stopped after the last, and which site each project and server belongs to (the lab's
Nova and ML2 drivers call back with project and server ids)."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Any, Protocol

from interlock_lab.claims import LabAddresses
from interlock_lab.openstack.controller import Controller

# Where nodes on external (127.x) networks live inside the lab; their 127.x address is
# forwarded to them, as a provider network's address would be routed.
INNER = ipaddress.IPv4Network("100.64.0.0/10")


class ProjectSite(Protocol):
    """An openstack site as the cloud tracks it, and what the drivers' callbacks do to it
    (interlock_lab.emulators.openstack, interlock_lab.control)."""

    project_id: str
    servers: dict[str, str]

    async def spawn(self, body: dict[str, Any]) -> None: ...

    async def destroy(self, server_id: str, wipe: bool) -> None: ...

    async def floating_ip(self, body: dict[str, Any]) -> None: ...

    def security(self, body: dict[str, Any]) -> None: ...

    async def filter(self) -> None: ...

    def holds_group(self, group_id: str) -> bool: ...


class OpenstackCloud:
    """The lab's one OpenStack, shared by its openstack sites (held by the Lab): started for
    the first site, stopped after the last; which site each project and server is."""

    def __init__(self, root: Path, addresses: LabAddresses, lab_api: str) -> None:
        self.root = root
        self.addresses = addresses
        self.lab_api = lab_api
        self.controller: Controller | None = None
        self.sites: dict[str, ProjectSite] = {}  # project id -> site
        self._lock = threading.Lock()
        self._inner_next = 0

    def acquire(self) -> Controller:
        with self._lock:
            if self.controller is None:
                where = self.addresses
                c = Controller(self.root, where.services, self.lab_api, where.epmd_port)
                c.start()
                self.controller = c
            return self.controller

    def joined(self, site: ProjectSite) -> None:
        with self._lock:
            self.sites[site.project_id] = site

    def release(self, site: ProjectSite) -> None:
        with self._lock:
            self.sites.pop(site.project_id, None)
            if not self.sites and self.controller is not None:
                self.controller.stop()
                self.controller = None

    def inner(self, cidr: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        """A block of INNER as large as `cidr`, for an external network's nodes."""
        with self._lock:
            base = int(INNER.network_address) + self._inner_next
            self._inner_next += cidr.num_addresses
        return ipaddress.IPv4Network((base, cidr.prefixlen))

    def site_of(self, project_id: str) -> ProjectSite | None:
        return self.sites.get(project_id)

    def site_of_group(self, group_id: str | None) -> ProjectSite | None:
        if not group_id:
            return None
        return next((s for s in self.sites.values() if s.holds_group(group_id)), None)

    def site_of_server(self, server_id: str) -> ProjectSite | None:
        return next((s for s in self.sites.values() if server_id in s.servers), None)
