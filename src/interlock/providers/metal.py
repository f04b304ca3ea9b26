"""Physical machines through Redfish (sushy): an inventory, atomic claims, power.

A metal site has no key API, no floating IPs and no firewall API (whatever filters its
network is outside interlock's reach): a request is an atomic claim of a free machine
that matches, a one-time network boot (a fresh install) and power on; release powers
off and returns the machine, marked for a fresh install. Root on a fresh install is
reached with the pool's key (the provider's bootstrap), as Packet did.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import sushy
from sushy import exceptions as sx
from sushy.auth import BasicAuth

from interlock.config import Machine, MetalSite
from interlock.firewall import Firewall
from interlock.model import Flavor, Image, Metadata, Network
from interlock.providers.base import (
    AuthError,
    InvalidRequestError,
    NodeRequest,
    NotFoundError,
    QuotaError,
    ServerInfo,
    TransientError,
)
from interlock.state import Store


def flavor_of(m: Machine) -> Flavor:
    return Flavor(
        id=f"c{m.vcpus}-m{m.ram_mib // 1024}g-d{m.disk_gib}g",
        name=f"{m.vcpus} cores, {m.ram_mib // 1024} GiB, {m.disk_gib} GB disk",
        vcpus=m.vcpus,
        ram_mib=m.ram_mib,
        disk_gib=m.disk_gib,
    )


def image_of(m: Machine) -> Image:
    return Image(
        id=f"{m.distro}-{m.version}",
        name=f"{m.distro} {m.version} (installed)",
        distro=m.distro,
        version=m.version,
        login_hints=("root",),
    )


class MetalProvider:
    def __init__(self, site: str, config: MetalSite, store: Store) -> None:
        self.site = site
        self.config = config
        self.store = store
        self.bootstrap: tuple[Path, str] | None = (config.pool_key, "root")
        self.machines = {m.uuid: m for m in config.machines}
        self._conn: sushy.Sushy | None = None

    @property
    def api_host(self) -> str:
        return urlsplit(self.config.endpoint).hostname or ""  # the Redfish service's

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except sx.AccessError as e:
            raise AuthError(self.site, f"BMC refused the credentials: {e}") from None
        except sx.ResourceNotFoundError as e:
            raise NotFoundError(self.site, str(e)) from None
        except (sx.ServerSideError, sx.ConnectionError, requests.RequestException) as e:
            raise TransientError(self.site, f"BMC: {e}") from None
        except sx.HTTPError as e:
            raise InvalidRequestError(self.site, f"BMC: {e}") from None

    def _bmc(self) -> sushy.Sushy:
        if self._conn is None:
            password = self.config.password_file.read_text().strip()
            with self._mapped():
                self._conn = sushy.Sushy(
                    self.config.endpoint, auth=BasicAuth(self.config.username, password)
                )
        return self._conn

    def _system(self, uuid: str) -> Any:
        with self._mapped():
            return self._bmc().get_system(f"{self._bmc().get_system_collection().path}/{uuid}")

    def _powered_on(self, uuid: str) -> bool:
        system = self._system(uuid)
        with self._mapped():
            system.refresh()
        return bool(system.power_state != sushy.PowerState.OFF)

    def metadata(self) -> Metadata:
        flavors = {flavor_of(m).id: flavor_of(m) for m in self.machines.values()}
        images = {
            image_of(m).id: image_of(m).model_copy(
                update={
                    "only_flavors": tuple(
                        sorted(
                            {
                                flavor_of(o).id
                                for o in self.machines.values()
                                if image_of(o).id == image_of(m).id
                            }
                        )
                    )
                }
            )
            for m in self.machines.values()
        }
        net = Network(
            id="public",
            name="public",
            role="public",
            evidence="each machine has a fixed public address in the inventory",
        )
        return Metadata(
            flavors=tuple(flavors.values()), images=tuple(images.values()), networks=(net,)
        )

    def register_key(self, name: str, public_key: str, tags: dict[str, str] | None = None) -> None:
        return None  # no key API: the node key goes in over SSH with the pool key

    def delete_key(self, ref: str) -> None:
        return None

    def key_exists(self, ref: str) -> bool:
        return False

    def create_node(self, request: NodeRequest) -> ServerInfo:
        # request.groups: no firewall API, nothing filtered, nothing to carry.
        fitting = [
            uuid
            for uuid, m in self.machines.items()
            if flavor_of(m).id == request.flavor.id and image_of(m).id == request.image.id
        ]
        # The claim is atomic among this store's users; the BMC's power state is what
        # everyone sees: a machine that is on is somebody's (another home, another tool).
        fitting = [uuid for uuid in fitting if not self._powered_on(uuid)]
        machine = self.store.claim(self.site, fitting, request.name)
        if machine is None:
            raise QuotaError(
                self.site, f"no free machine of {request.flavor.id} with {request.image.id}"
            )
        try:
            self._boot(machine)
        except Exception:
            self.store.unclaim(self.site, machine)
            raise
        # Powered on, not yet up: its address is the inventory's.
        return ServerInfo(machine, "pending", self.machines[machine].public_ip, None)

    def _boot(self, machine: str) -> None:
        """A fresh install: a one-time network boot, then power on."""
        system = self._system(machine)
        with self._mapped():
            system.set_system_boot_options(
                sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE
            )
            system.reset_system(sushy.ResetType.ON)

    def describe_node(self, server_id: str) -> ServerInfo:
        m = self.machines.get(server_id)
        if m is None:
            return ServerInfo(server_id, "gone", None, None)
        system = self._system(server_id)
        with self._mapped():
            system.refresh()
        on = system.power_state == sushy.PowerState.ON
        return ServerInfo(server_id, "running" if on else "stopped", m.public_ip, None)

    def describe_nodes(self, server_ids: list[str]) -> dict[str, ServerInfo]:
        return {i: self.describe_node(i) for i in server_ids}  # a BMC answers per machine

    def find_node(self, name: str) -> str | None:
        """The machine claimed for `name`. One that is still off is a request cut between
        its claim and its power-on (a killed process): that request is finished here."""
        machine = self.store.claimed_by(self.site, name)
        if machine is not None and not self._powered_on(machine):
            self._boot(machine)
        return machine

    def attach_public_ip(
        self, server_id: str, tags: dict[str, str] | None = None
    ) -> tuple[str, str]:
        raise InvalidRequestError(self.site, "metal machines have fixed public addresses")

    def public_ips_of(self, node: str) -> list[str]:
        return []

    def release_public_ip(self, ref: str) -> None:
        return None

    def delete_node(self, server_id: str) -> None:
        if server_id not in self.machines:
            return
        system = self._system(server_id)
        with self._mapped():
            system.refresh()
            if system.power_state != sushy.PowerState.OFF:
                system.reset_system(sushy.ResetType.FORCE_OFF)
            # Returned to the pool marked for a fresh install: whoever powers it on next
            # gets the pool's image and key, not the last user's node.
            system.set_system_boot_options(
                sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE
            )
        self.store.unclaim(self.site, server_id)

    # -- no firewall API: nothing filtered, nothing to open ---------------------------

    def firewall(self, server_id: str) -> Firewall:
        return Firewall(enforced=False)

    def firewalls(self, server_ids: list[str]) -> dict[str, Firewall]:
        return {i: Firewall(enforced=False) for i in server_ids}

    def default_firewall(self, network: Network | None) -> Firewall:
        return Firewall(enforced=False)

    def make_group(
        self,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
        network: Network | None,
    ) -> str:
        raise InvalidRequestError(self.site, "a metal site has no security groups")

    def open_ports(
        self,
        server_id: str,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
    ) -> str:
        raise InvalidRequestError(self.site, "a metal site has no security groups")

    def attach_group(self, server_id: str, group: str) -> str:
        raise InvalidRequestError(self.site, "a metal site has no security groups")

    def groups_of(self, deployment: str) -> list[str]:
        return []

    def delete_group(self, ref: str) -> None:
        return None
