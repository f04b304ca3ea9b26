"""OpenStack sites: a project each on the lab's one real OpenStack.

The first openstack site starts the OpenStack (interlock_lab.openstack.controller),
the last one to stop stops it. Each site is a Keystone project with its own user
(password in a 0600 file, a clouds.yaml entry of its own), and, created by the
admin from the site file: networks (external ones made external, or shared, for
that project only, through Neutron RBAC), subnets, routers, private flavors,
private images with their properties, and quotas.

Servers are sandbox nodes: the lab's Nova driver asks for a node at spawn (see
`spawn`), the lab's ML2 driver reports floating IP changes (`floating_ip`), and
the lab forwards the public address to the node at once. Neutron's security groups
and port security decide what reaches a node: the forwarder asks Neutron
(`NeutronFirewall`) about every new connection to a public address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import yaml

from interlock import config
from interlock_lab import labdir
from interlock_lab.emulators.base import SiteContext, password_hash
from interlock_lab.fabric.network import Admit
from interlock_lab.node.rootfs import FirstBoot
from interlock_lab.openstack.configs import REGION
from interlock_lab.openstack.controller import Controller
from interlock_lab.sitefile import ImageSpec, NetworkSpec

LOG = logging.getLogger(__name__)
IMAGE_NS = uuid.UUID("6f0c7c9e-3c1e-4d57-9a59-1f5f3c3f9a11")


class OpenstackSite:
    kind = "openstack"

    def __init__(self, ctx: SiteContext) -> None:
        if ctx.openstack is None:
            raise RuntimeError("an openstack site needs the lab's OpenStack")
        self.ctx = ctx
        self.cloud = ctx.openstack
        self.spec = ctx.spec
        self.project_id = ""
        self.networks: dict[str, tuple[NetworkSpec, ipaddress.IPv4Network]] = {}  # id -> spec
        self.images: dict[str, ImageSpec] = {}  # glance id -> spec
        self.servers: dict[str, str] = {}  # server id -> port id
        self.ports: dict[str, str] = {}  # port id -> server id
        self.published: dict[str, ipaddress.IPv4Address] = {}  # floating IP id -> address
        self.groups: dict[str, set[str]] = {}  # security group id -> its rules (not default)
        self.guard = NeutronFirewall(self) if ctx.spec.firewall.enforced else None
        self._filtering: asyncio.Lock | None = None
        self._password_hash: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        c = self.cloud.acquire()
        try:
            self._setup(c)
        except BaseException:
            self.cloud.release(self)
            raise
        self.cloud.joined(self)

    def stop(self) -> None:
        self.cloud.release(self)

    def info(self) -> dict[str, Any]:
        c = self.cloud.controller
        return {
            "endpoint": c.settings.url("keystone", "/v3") if c else None,
            "project": f"lab-{self.spec.name}",
            "project_id": self.project_id,
            "clouds_file": str(self._clouds_file()),
            "admin_password_file": str(c.admin_password_file) if c else None,
            "password_file": str(self._secret_file()),
            "openstack_start_seconds": c.timings if c else None,
        }

    def client_config(self) -> config.OpenstackSite:
        return config.OpenstackSite(
            provider="openstack",
            cloud=self.spec.name,
            clouds_file=self._clouds_file(),
            region=REGION,
        )

    def _clouds_file(self) -> Path:
        return self.ctx.dir / "clouds.yaml"

    def _secret_file(self) -> Path:
        return self.ctx.dir / "login-password"

    # -- the project -------------------------------------------------------------

    def _setup(self, c: Controller) -> None:
        conn = c.admin()
        name = f"lab-{self.spec.name}"
        ident = conn.identity
        project = ident.create_project(name=name, domain_id="default")
        self.project_id = project.id
        password = labdir.secret(self.ctx.dir / "api-password")
        user = ident.create_user(name=name, password=password, domain_id="default")
        ident.assign_project_role_to_user(project, user, ident.find_role("member"))
        clouds = {
            "clouds": {
                self.spec.name: {
                    "auth": {
                        "auth_url": c.settings.url("keystone", "/v3"),
                        "username": name,
                        "password": password,
                        "project_name": name,
                        "user_domain_name": "Default",
                        "project_domain_name": "Default",
                    },
                    "region_name": REGION,
                    "identity_api_version": 3,
                }
            }
        }
        labdir.write_secret(self._clouds_file(), yaml.safe_dump(clouds))
        q = self.spec.quotas
        if q.floating_ips is not None:
            conn.network.update_quota(project.id, floating_ips=q.floating_ips)
        if q.instances is not None:
            conn.compute.update_quota_set(project.id, instances=q.instances)
        self._networks(conn)
        self._flavors(conn)
        self._images(conn)
        if self.spec.default_open:
            self._open_default_group(conn)

    def _open_default_group(self, conn: Any) -> None:
        """A cloud whose projects' default group admits everything (listing a project's
        groups makes Neutron create its default group)."""
        default = next(conn.network.security_groups(project_id=self.project_id, name="default"))
        conn.network.create_security_group_rule(
            security_group_id=default.id,
            direction="ingress",
            ether_type="IPv4",
            remote_ip_prefix="0.0.0.0/0",
            project_id=self.project_id,
        )

    def _networks(self, conn: Any) -> None:
        made: dict[str, tuple[Any, Any]] = {}
        for n in self.spec.networks:
            if n.external:
                net = conn.network.create_network(
                    name=n.name,
                    provider_network_type="flat",
                    provider_physical_network=f"{self.spec.name}-{n.name}",
                )
                # External (and shared) for this project only, as a real cloud's RBAC does.
                conn.network.create_rbac_policy(object_type="network", object_id=net.id,
                    action="access_as_external", target_project_id=self.project_id)  # fmt: skip
                if n.shared:
                    conn.network.create_rbac_policy(object_type="network", object_id=net.id,
                        action="access_as_shared", target_project_id=self.project_id)  # fmt: skip
                inner = self.cloud.inner(n.cidr)
                owner: dict[str, Any] = {}
            else:
                net = conn.network.create_network(name=n.name, project_id=self.project_id)
                inner = n.cidr
                owner = {"project_id": self.project_id}
            hosts = list(n.cidr.hosts())
            subnet = conn.network.create_subnet(
                name=f"{n.name}-subnet",
                network_id=net.id,
                ip_version=4,
                cidr=str(n.cidr),
                gateway_ip=str(hosts[0]),
                allocation_pools=[
                    {"start": str(hosts[min(9, len(hosts) - 2)]), "end": str(hosts[-1])}
                ],
                enable_dhcp=False,
                **owner,
            )
            made[n.name] = (net, subnet)
            self.networks[net.id] = (n, inner)
        for n in self.spec.networks:
            if n.router is None:
                continue
            net, subnet = made[n.name]
            router = conn.network.create_router(
                name=f"router-{n.name}",
                project_id=self.project_id,
                external_gateway_info={"network_id": made[n.router][0].id},
            )
            conn.network.add_interface_to_router(router, subnet_id=subnet.id)

    def _flavors(self, conn: Any) -> None:
        for f in self.spec.flavors:
            flavor = conn.compute.create_flavor(
                name=f.name, vcpus=f.vcpus, ram=f.ram_mib, disk=f.disk_gib, is_public=False
            )
            conn.compute.flavor_add_tenant_access(flavor, self.project_id)
            specs = {"capabilities:cpu_info:arch": "aarch64"} if f.arch == "arm64" else {}
            if f.gpus:
                specs["resources:VGPU"] = str(f.gpus)
            if specs:
                conn.compute.create_flavor_extra_specs(flavor, specs)

    def _images(self, conn: Any) -> None:
        glance = conn.image
        for i in self.spec.images:
            image_id = str(uuid.uuid5(IMAGE_NS, f"{self.spec.name}/{i.id}"))
            body = {
                "id": image_id,
                "name": i.name,
                "disk_format": "raw",
                "container_format": "bare",
                "visibility": "private",
                "owner": self.project_id,
                "architecture": "aarch64" if i.arch == "arm64" else "x86_64",
                **i.properties,
            }
            glance.post("/images", json=body).raise_for_status()
            glance.put(
                f"/images/{image_id}/file",
                data=b"interlock lab image\n",
                headers={"Content-Type": "application/octet-stream"},
            ).raise_for_status()
            self.images[image_id] = i

    # -- servers (called by the lab's Nova and ML2 drivers, on the lab's loop) --------

    async def spawn(self, body: dict[str, Any]) -> None:
        rt = self.ctx.runtime
        server = body["server_id"]
        if not body["ports"]:
            raise ValueError(f"server {server} has no IPv4 port")
        port = body["ports"][0]
        spec, inner = self.networks[port["network_id"]]
        fixed = ipaddress.IPv4Address(port["ip"])
        private = inner[int(fixed) - int(spec.cidr.network_address)]
        net = await rt.network(f"{self.spec.name}/{port['network_id']}", inner)
        image = self.images[body["image_id"]]
        behaviour = self.spec.behaviour(image)
        if behaviour.password_auth and self._password_hash is None:
            self._password_hash = await asyncio.to_thread(password_hash, self._secret_file())
        boot = FirstBoot(
            hostname=body["hostname"] or f"server-{server[:8]}",
            behaviour=behaviour,
            private_ip=str(private),
            instance_keys=(body["key_data"].strip(),) if body["key_data"] else (),
            password_hash=self._password_hash if behaviour.password_auth else None,
            hide=(str(rt.run_dir),),
        )
        await rt.boot(server, self.spec.name, net, private, boot)
        self.servers[server] = port["port_id"]
        self.ports[port["port_id"]] = server
        self.ctx.ledger.created(self.spec.name, "server", server, image.id)
        if spec.external:  # a provider network: its address is the node's public one
            await rt.publish(fixed, self.spec.public.ports, server, self.guard)
        await self.filter()

    async def destroy(self, server_id: str, wipe: bool) -> None:
        await self.ctx.runtime.halt(server_id, wipe=wipe)
        if wipe:
            port = self.servers.pop(server_id, None)
            self.ports.pop(port or "", None)
            if self.ctx.ledger.is_open(self.spec.name, "server", server_id):
                self.ctx.ledger.released(self.spec.name, "server", server_id)
        await self.filter()

    async def floating_ip(self, body: dict[str, Any]) -> None:
        rt = self.ctx.runtime
        fip, address, port = body["id"], body["address"], body["port_id"]
        ip = ipaddress.IPv4Address(address)
        deleted = body.get("event") == "after_delete"
        if not deleted and not self.ctx.ledger.is_open(self.spec.name, "address", fip):
            self.ctx.ledger.created(self.spec.name, "address", fip, address)
        if fip in self.published:
            await rt.unpublish(self.published.pop(fip))
        server = self.ports.get(port or "")
        if server is not None and server in rt.nodes:
            await rt.publish(ip, self.spec.public.ports, server, self.guard)
            self.published[fip] = ip
        if deleted and self.ctx.ledger.is_open(self.spec.name, "address", fip):
            self.ctx.ledger.released(self.spec.name, "address", fip)

    # -- security groups (the ML2 driver's reports, for the ledger) ---------------------

    def holds_group(self, group_id: str) -> bool:
        return group_id in self.groups

    def security(self, body: dict[str, Any]) -> None:
        ledger, site = self.ctx.ledger, self.spec.name
        rid, group, created = body["id"], body.get("group_id"), body["event"] == "created"
        if body["kind"] == "port":
            return  # nothing of the ledger's; the filters follow (see `filter`)
        if body["kind"] == "group" and created:
            self.groups[rid] = set()
            ledger.created(site, "security-group", rid)
        elif body["kind"] == "group" and not created and rid in self.groups:
            for rule in self.groups.pop(rid):
                ledger.released(site, "security-group-rule", rule)
            ledger.released(site, "security-group", rid)
        elif body["kind"] == "rule" and group in self.groups:
            if created:
                self.groups[group].add(rid)
                ledger.created(site, "security-group-rule", rid, group)
            else:
                self.groups[group].discard(rid)
                ledger.released(site, "security-group-rule", rid)

    # -- security groups between nodes ------------------------------------------------

    async def filter(self) -> None:
        """Each of the site's lab networks filtered as Neutron's security groups say (a rule
        from a prefix admits it, a rule from a group admits its members' addresses)."""
        if self.guard is None:
            return
        if self._filtering is None:
            self._filtering = asyncio.Lock()
        async with self._filtering:  # computed and applied in turn: the last one is current
            try:
                admitted = await asyncio.to_thread(self.guard.between_nodes)
            except Exception:  # Neutron could not say: the filters stay as they were
                LOG.exception("%s: security groups between nodes not read", self.spec.name)
                return
            rt = self.ctx.runtime
            for network_id in self.networks:
                net = rt.networks.get(f"{self.spec.name}/{network_id}")
                if net is not None:
                    await asyncio.to_thread(net.admit_only, admitted.get(network_id, {}))

    def lab_address(self, network_id: str, fixed: str) -> ipaddress.IPv4Address:
        """Where a port's fixed address lives in the lab (external networks are moved)."""
        spec, inner = self.networks[network_id]
        return inner[int(ipaddress.IPv4Address(fixed)) - int(spec.cidr.network_address)]


class NeutronFirewall:
    """A port's security groups as Neutron holds them, read at each new connection: admitted
    where port security is off, or an IPv4 ingress rule covers the port and the source
    address (rules naming a remote group admit its members, never the host)."""

    def __init__(self, site: OpenstackSite) -> None:
        self.site = site
        self._local = threading.local()  # a connection per thread (requests' sessions)

    async def admits(self, node_id: str, port: int, source: ipaddress.IPv4Address) -> bool:
        return await asyncio.to_thread(self._admits, node_id, port, source)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            controller = self.site.cloud.controller
            assert controller is not None
            conn = self._local.conn = controller.admin()
        return conn

    def between_nodes(self) -> dict[str, dict[ipaddress.IPv4Address, list[Admit]]]:
        """network id -> the lab address of each server port there -> what it admits."""
        conn, site = self._conn(), self.site
        ports = [p for p in conn.network.ports(project_id=site.project_id) if p.id in site.ports]
        members: dict[str, list[ipaddress.IPv4Network]] = {}
        where: dict[str, tuple[str, ipaddress.IPv4Address]] = {}
        for p in ports:
            fixed = next((f["ip_address"] for f in p.fixed_ips if ":" not in f["ip_address"]), None)
            if fixed is None or p.network_id not in site.networks:
                continue
            where[p.id] = (p.network_id, site.lab_address(p.network_id, fixed))
            for g in p.security_group_ids or ():
                members.setdefault(g, []).append(ipaddress.IPv4Network(where[p.id][1]))
        out: dict[str, dict[ipaddress.IPv4Address, list[Admit]]] = {}
        rules: dict[str, list[Any]] = {}
        for p in ports:
            if p.id not in where or p.is_port_security_enabled is False:
                continue
            network, address = where[p.id]
            admits = []
            for g in p.security_group_ids or ():
                if g not in rules:
                    rules[g] = list(conn.network.security_group_rules(security_group_id=g))
                for r in rules[g]:
                    if r.direction != "ingress" or r.ether_type != "IPv4":
                        continue
                    if r.protocol not in (None, "tcp", "6"):
                        continue
                    low, high = r.port_range_min, r.port_range_max
                    ports_ = (low, high if high is not None else low) if low is not None else None
                    if r.remote_group_id:
                        sources = tuple(members.get(r.remote_group_id, []))
                    else:
                        sources = (ipaddress.IPv4Network(r.remote_ip_prefix or "0.0.0.0/0"),)
                    admits.append(Admit(ports_, sources))
            out.setdefault(network, {})[address] = admits
        return out

    def _admits(self, node_id: str, port: int, source: ipaddress.IPv4Address) -> bool:
        port_id = self.site.servers.get(node_id)
        if port_id is None:
            return False
        conn = self._conn()
        found = conn.network.get_port(port_id)
        if found.is_port_security_enabled is False:
            return True
        for group in found.security_group_ids or ():
            for r in conn.network.security_group_rules(security_group_id=group):
                if r.direction != "ingress" or r.ether_type != "IPv4":
                    continue
                if r.protocol not in (None, "tcp", "6"):
                    continue
                low, high = r.port_range_min, r.port_range_max
                if low is not None and not low <= port <= (high if high is not None else low):
                    continue
                if r.remote_group_id or getattr(r, "remote_address_group_id", None):
                    continue
                if source in ipaddress.IPv4Network(r.remote_ip_prefix or "0.0.0.0/0"):
                    return True
        return False
