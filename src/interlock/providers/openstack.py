"""OpenStack through openstacksdk (Nova, Neutron, Glance).

No two OpenStack clouds agree on names, so nothing here reads them: a network's
role comes from `router:external`, `shared` and the project's routers (which
private network a router takes outside, and to which external network); an
image's distro and login account from `os_distro`/`os_version`/`os_admin_user`
where the cloud sets them, its name otherwise. Floating IPs are created bound to
the server's port in one call, and released by id.

Credentials come from clouds.yaml through openstacksdk's own loader; nothing
here reads or keeps a password.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from keystoneauth1 import exceptions as ksa
from openstack import connection
from openstack import exceptions as osx
from openstack.config import loader
from openstack.network.v2.security_group_rule import SecurityGroupRule

from interlock.config import OpenstackSite
from interlock.errors import ExitCode, InterlockError
from interlock.firewall import ANYWHERE, Firewall, Ingress, Protocol
from interlock.model import Flavor, Image, Metadata, Network, NetworkRole
from interlock.providers.base import (
    AuthError,
    InvalidRequestError,
    NodeRequest,
    NotFoundError,
    ProviderError,
    QuotaError,
    ServerInfo,
    TransientError,
    described,
)
from interlock.providers.normalize import DEFAULT_USERS, distro_version
from interlock.state import Store

T = TypeVar("T")
STATES = {
    "ACTIVE": "running",
    "BUILD": "pending",
    "REBUILD": "pending",
    "HARD_REBOOT": "pending",
    "REBOOT": "pending",
    "SHUTOFF": "stopped",
    "STOPPED": "stopped",
    "SUSPENDED": "stopped",
    "PAUSED": "stopped",
    "SHELVED": "stopped",
    "SHELVED_OFFLOADED": "stopped",
    "DELETED": "gone",
    "SOFT_DELETED": "gone",
}
# How clouds say "no room": Nova's OverQuota (403/413), Neutron's OverQuota and an
# exhausted floating IP subnet (409), the scheduler's "No valid host".
QUOTA_TEXT = re.compile(
    r"quota|no valid host|no more ip addresses|ipaddressgenerationfailure|overlimit", re.I
)
ARM = {"aarch64", "arm64", "armv8"}


def classify(err: BaseException) -> type[ProviderError] | None:
    """The taxonomy class for an SDK or keystoneauth error (None: not ours to map)."""
    text = str(err)
    if isinstance(err, osx.HttpException) and err.status_code is not None:
        status = err.status_code
        if QUOTA_TEXT.search(text) and status in (400, 403, 409, 413):
            return QuotaError
        if status in (401, 403):
            return AuthError
        if status == 404:
            return NotFoundError
        if status in (409, 429) or status >= 500:
            return TransientError  # a state in transition, throttled, or down
        return InvalidRequestError
    if isinstance(err, ksa.Unauthorized | ksa.AuthorizationFailure | ksa.MissingAuthPlugin):
        return AuthError
    if isinstance(
        err, ksa.ConnectionError | ksa.RetriableConnectionFailure | ksa.ServiceUnavailable
    ):
        return TransientError
    if isinstance(err, ksa.EndpointNotFound | ksa.DiscoveryFailure | osx.ConfigException):
        return InvalidRequestError
    if isinstance(err, ksa.ClientException | osx.SDKException):
        return InvalidRequestError
    return None


def one_line(err: BaseException) -> str:
    """The API's own words, once: "HTTP 409 from POST http://…/floatingips: Quota exceeded
    …" (openstacksdk's str() repeats the class name and buries the server's message)."""
    if isinstance(err, osx.HttpException) and err.status_code is not None:
        method, url = (v.decode() if isinstance(v, bytes) else v for v in (err.method, err.url))
        where = f" from {method} {url}" if url else ""
        said = err.details or err.message
        text = f"HTTP {err.status_code}{where}: {said}"
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())[:300]


NODE_TAG = "interlock:node"
CHUNK = 40  # ids in one filter: 40 UUIDs make a query of about 2 KB
DEPLOYMENT_TAG = "interlock:deployment"
PROTOCOLS: dict[str | None, Protocol] = {None: "all", "tcp": "tcp", "6": "tcp", "udp": "udp",
    "17": "udp", "icmp": "icmp", "1": "icmp"}  # fmt: skip


def _chunks(ids: list[str]) -> list[list[str]]:
    """`ids` in CHUNKs: a filter's values go in the URL, which proxies keep short."""
    return [ids[at : at + CHUNK] for at in range(0, len(ids), CHUNK)]


def _enforced(port: Any) -> bool:
    """Whether Neutron filters the port's traffic (port security off: nothing filtered)."""
    return port.is_port_security_enabled is not False


def _ingress(r: Any) -> list[Ingress]:
    """A security group rule as interlock's rule (none: a protocol it does not weigh)."""
    proto = PROTOCOLS.get(r.protocol.lower() if r.protocol else None)
    if proto is None:
        return []
    low, high = r.port_range_min, r.port_range_max
    ports = (int(low), int(high if high is not None else low)) if low else None
    sources: tuple[ipaddress.IPv4Network, ...] | None
    if r.remote_group_id or getattr(r, "remote_address_group_id", None):
        sources = None  # members of a group: never the operator
    elif r.remote_ip_prefix:
        sources = (ipaddress.IPv4Network(r.remote_ip_prefix, strict=False),)
    else:
        sources = (ANYWHERE,)
    return [Ingress(protocol=proto, ports=ports, sources=sources)]


class OpenstackProvider:
    bootstrap: tuple[Path, str] | None = None

    def __init__(self, site: str, config: OpenstackSite, store: Store | None = None) -> None:
        self.site = site
        self.config = config
        self._conn: connection.Connection | None = None
        self._meta: Metadata | None = None
        self._gateways: dict[str, str] = {}  # private network id -> external network id

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except ProviderError:
            raise
        except Exception as e:
            cls = classify(e)
            if cls is None:
                raise
            raise cls(self.site, one_line(e)) from None

    def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        with self._mapped():
            return fn(*args, **kw)

    @property
    def conn(self) -> connection.Connection:
        if self._conn is None:
            files = [str(self.config.clouds_file)] if self.config.clouds_file else None
            where = f"clouds file {self.config.clouds_file}" if files else "the clouds.yaml files"
            try:
                cloud = loader.OpenStackConfig(config_files=files).get_one(
                    cloud=self.config.cloud, region_name=self.config.region or None
                )
            except osx.ConfigException as e:
                # The cloud (or region) is not in the file: fixing the config is the cure.
                raise InterlockError(
                    f"cloud: not usable from {where}: {' '.join(str(e).split())[:200]}",
                    ExitCode.BAD_INPUT,
                ) from None
            with self._mapped():
                self._conn = connection.Connection(config=cloud)
        return self._conn

    @property
    def api_host(self) -> str:
        """The host of the auth URL (Keystone's; else the compute endpoint's)."""
        url = self.conn.config.get_auth_args().get("auth_url")
        if not url:
            url = self._call(self.conn.compute.get_endpoint)
        return urlsplit(str(url)).hostname or ""

    # -- metadata ------------------------------------------------------------

    def metadata(self) -> Metadata:
        with self._mapped():
            flavors = tuple(self._flavor(f) for f in self.conn.compute.flavors(details=True))
            images = tuple(
                img
                for i in self.conn.image.images(status="active")
                if (img := self._image(i)) is not None
            )
            networks = self._networks()
        self._meta = Metadata(flavors=flavors, images=images, networks=networks)
        return self._meta

    @staticmethod
    def _flavor(f: Any) -> Flavor:
        specs = f.extra_specs or {}
        arch = str(specs.get("capabilities:cpu_info:arch", "x86_64")).lower()
        return Flavor(
            id=f.id,
            name=f.name or f.id,
            vcpus=int(f.vcpus or 0),
            ram_mib=int(f.ram or 0),
            disk_gib=int(f.disk or 0),
            gpus=int(specs.get("resources:VGPU", 0)),
            arch="arm64" if arch in ARM else "x86_64",
        )

    @staticmethod
    def _image(i: Any) -> Image | None:
        props = i.properties or {}
        distro = (i.os_distro or "").lower()
        version = str(i.os_version or "")
        if not (distro and version):
            found = distro_version(i.name or "", distro)
            if found is None:
                return None
            distro, version = found
        admin = i.os_admin_user or props.get("os_admin_user")
        arch = str(i.architecture or props.get("hw_architecture") or "x86_64").lower()
        hints = tuple(dict.fromkeys([*filter(None, [admin]), *DEFAULT_USERS.get(distro, ())]))
        return Image(
            id=i.id,
            name=i.name or i.id,
            distro=distro,
            version=version,
            arch="arm64" if arch in ARM else "x86_64",
            login_hints=hints,
            created=str(i.created_at or ""),
        )

    def _networks(self) -> tuple[Network, ...]:
        nets = list(self.conn.network.networks())
        names = {n.id: n.name or n.id for n in nets}
        # Which private network each router takes outside, and where to.
        gateways: dict[str, tuple[str, str]] = {}
        for r in self.conn.network.routers():
            gw = (r.external_gateway_info or {}).get("network_id")
            if not gw:
                continue
            for p in self.conn.network.ports(device_id=r.id):
                if p.network_id != gw:
                    gateways.setdefault(p.network_id, (r.name or r.id, gw))
        self._gateways = {net: gw for net, (_, gw) in gateways.items()}
        used = set(self._gateways.values())
        out = []
        role: NetworkRole
        for n in nets:
            name = names[n.id]
            router: str | None = None
            if n.is_router_external and n.is_shared:
                role, why = "public", "router:external and shared: servers boot on it, routable"
            elif n.is_router_external and not n.subnet_ids:
                role, why = "external-unusable", "router:external but it has no subnet"
            elif n.is_router_external and n.id in used:
                routers = sorted(r for r, gw in gateways.values() if gw == n.id)
                role, why = "external-usable", f"router:external; router {routers[0]} uses it"
            elif n.is_router_external:
                role, why = "external-unusable", "router:external but no router of ours uses it"
            elif n.id in gateways:
                router, gw = gateways[n.id]
                role, why = "private", f"router {router} takes it out to {names.get(gw, gw)}"
            else:
                role, why = "private", "no router takes it to an external network"
            out.append(
                Network(
                    id=n.id,
                    name=name,
                    role=role,
                    evidence=why,
                    reaches_outside=role != "private" or n.id in gateways,
                    router=router,
                )
            )
        # Public first, then private networks that reach outside: selection's order.
        rank = {"public": 0, "private": 1}
        return tuple(sorted(out, key=lambda n: (rank.get(n.role, 2), not n.reaches_outside)))

    def _public_networks(self) -> set[str]:
        if self._meta is None:
            self.metadata()
        assert self._meta is not None
        return {n.name for n in self._meta.networks if n.role == "public"}

    # -- keys ----------------------------------------------------------------

    def register_key(self, name: str, public_key: str, tags: dict[str, str] | None = None) -> str:
        # Nova's keypairs take no tags: the name (interlock-NODE) is the ownership mark.
        with self._mapped():
            try:
                self.conn.compute.create_keypair(name=name, public_key=public_key)
            except osx.ConflictException as e:
                if QUOTA_TEXT.search(str(e)):
                    raise
                # There already (a step run again, a key left behind): this one replaces it.
                self.conn.compute.delete_keypair(name, ignore_missing=True)
                self.conn.compute.create_keypair(name=name, public_key=public_key)
        return name

    def delete_key(self, ref: str) -> None:
        self._call(self.conn.compute.delete_keypair, ref, ignore_missing=True)

    def key_exists(self, ref: str) -> bool:
        try:
            self._call(self.conn.compute.get_keypair, ref)
        except NotFoundError:
            return False
        return True

    # -- servers -------------------------------------------------------------

    def create_node(self, request: NodeRequest) -> ServerInfo:
        # Nova takes no idempotency token (a request id only traces): find_node is the guard.
        networks: Any = [{"uuid": request.network.id}] if request.network else "auto"
        kw: dict[str, Any] = {
            "name": request.name,
            "image_id": request.image.id,
            "flavor_id": request.flavor.id,
            "networks": networks,
            "metadata": request.tags,
        }
        if request.key_ref:
            kw["key_name"] = request.key_ref
        if request.groups:
            # Named, the project's default group is replaced: it goes first, kept (Nova takes
            # a group's name or id as its "name").
            names = dict.fromkeys(["default", *request.groups])
            kw["security_groups"] = [{"name": g} for g in names]
        server = self._call(self.conn.compute.create_server, **kw)
        # Nova answers a create with the id alone (no status, no addresses yet).
        running = server.status == "ACTIVE"
        return ServerInfo(str(server.id), "running" if running else "pending", None, None)

    def _info(self, s: Any) -> ServerInfo:
        """A server as interlock sees it; one in ERROR carries its fault as the error."""
        if s.status == "ERROR":
            fault = " ".join(str((s.fault or {}).get("message", "no fault recorded")).split())
            cls = QuotaError if QUOTA_TEXT.search(fault) else InvalidRequestError
            error = cls(self.site, f"server {s.id} went to ERROR: {fault}")
            return ServerInfo(str(s.id), "pending", None, None, error=error)
        public = self._public_networks()
        floating, direct, private = None, None, None
        for net, addrs in (s.addresses or {}).items():
            for a in addrs:
                if a.get("version") != 4:
                    continue
                if a.get("OS-EXT-IPS:type") == "floating":
                    floating = floating or a["addr"]
                elif net in public:
                    direct = direct or a["addr"]
                else:
                    private = private or a["addr"]
        return ServerInfo(
            str(s.id),
            STATES.get(s.status, "pending"),
            floating or direct or s.access_ipv4 or None,
            private or direct,
        )

    def describe_nodes(self, server_ids: list[str]) -> dict[str, ServerInfo]:
        """One id: GET the server; more: one listing of the project's servers (Nova filters
        no list by ids), the ids picked from it."""
        if len(set(server_ids)) == 1:
            (server_id,) = set(server_ids)
            try:
                found = {server_id: self._call(self.conn.compute.get_server, server_id)}
            except NotFoundError:
                found = {}
        elif server_ids:
            wanted = set(server_ids)
            with self._mapped():
                found = {s.id: s for s in self.conn.compute.servers(details=True) if s.id in wanted}
        else:
            return {}
        with self._mapped():
            return {
                i: self._info(found[i]) if i in found else ServerInfo(i, "gone", None, None)
                for i in server_ids
            }

    def describe_node(self, server_id: str) -> ServerInfo:
        info = self.describe_nodes([server_id])[server_id]
        if info.error is not None:
            raise info.error
        return info

    def find_node(self, name: str) -> str | None:
        with self._mapped():
            for s in self.conn.compute.servers(name=f"^{re.escape(name)}$"):
                if (s.metadata or {}).get("interlock:node") == name and s.status not in (
                    "DELETED",
                    "SOFT_DELETED",
                ):
                    return str(s.id)
        return None

    def _floating_network(self, network_id: str) -> str:
        declared = self.config.profile.floating_network
        meta = self._meta or self.metadata()
        if declared is not None:
            for n in meta.networks:
                if declared in (n.id, n.name):
                    return n.id
            raise InvalidRequestError(self.site, f"no network {declared!r} for floating IPs")
        if network_id in self._gateways:
            return self._gateways[network_id]
        usable = [n.id for n in meta.networks if n.role == "external-usable"]
        if not usable:
            raise InvalidRequestError(
                self.site, "no external network a router of ours reaches: no floating IP possible"
            )
        return usable[0]

    def attach_public_ip(
        self, server_id: str, tags: dict[str, str] | None = None
    ) -> tuple[str, str]:
        with self._mapped():
            ports = list(self.conn.network.ports(device_id=server_id))
            if not ports:
                raise TransientError(self.site, f"server {server_id} has no port yet")
            port = ports[0]
            # Created bound to the port, its ownership tags in its description (set in the
            # same call: Neutron's tags would need a second one).
            ip = self.conn.network.create_ip(
                floating_network_id=self._floating_network(port.network_id),
                port_id=port.id,
                description=described(tags or {}) or f"interlock: server {server_id}",
            )
        return str(ip.floating_ip_address), str(ip.id)

    def public_ips_of(self, node: str) -> list[str]:
        mark = f"{NODE_TAG}={node}"
        with self._mapped():
            found = [ip for ip in self.conn.network.ips() if mark in (ip.description or "").split()]
        return sorted(str(ip.id) for ip in found)

    def release_public_ip(self, ref: str) -> None:
        self._call(self.conn.network.delete_ip, ref, ignore_missing=True)

    def delete_node(self, server_id: str) -> None:
        try:
            server = self._call(self.conn.compute.get_server, server_id)
        except NotFoundError:
            return
        with self._mapped():
            self.conn.compute.delete_server(server, ignore_missing=True)
            # Gone means gone: its ports (and so any floating IP binding) go with it.
            self.conn.compute.wait_for_delete(server, interval=0.5, wait=300)

    # -- security groups -------------------------------------------------------------

    def _port(self, server_id: str) -> Any:
        ports = list(self.conn.network.ports(device_id=server_id))
        if not ports:
            raise TransientError(self.site, f"server {server_id} has no port yet")
        return ports[0]

    def firewall(self, server_id: str) -> Firewall:
        walls = self.firewalls([server_id])
        if server_id not in walls:
            raise TransientError(self.site, f"server {server_id} has no port yet")
        return walls[server_id]

    def firewalls(self, server_ids: list[str]) -> dict[str, Firewall]:
        """Two calls for up to CHUNK servers: their ports, then the ingress rules of their
        groups (Neutron takes a filter's values repeated: any of them matches)."""
        if not server_ids:
            return {}
        with self._mapped():
            ports: dict[str, Any] = {}  # a server's first port, as _port takes it
            for chunk in _chunks(sorted(set(server_ids))):
                for p in self.conn.network.ports(device_id=chunk):
                    ports.setdefault(p.device_id, p)
            held = {i: tuple(p.security_group_ids or ()) for i, p in ports.items()}
            union = sorted({g for i, ids in held.items() for g in ids if _enforced(ports[i])})
            rules: dict[str, list[Ingress]] = {g: [] for g in union}
            for chunk in _chunks(union):
                for r in self.conn.network.security_group_rules(
                    security_group_id=chunk, direction="ingress", ether_type="IPv4"
                ):
                    if r.security_group_id in rules:
                        rules[r.security_group_id] += _ingress(r)
        return {
            i: Firewall(groups=ids, rules=tuple(r for g in ids for r in rules[g]))
            if _enforced(ports[i])
            else Firewall(enforced=False, groups=ids)
            for i, ids in held.items()
        }

    def default_firewall(self, network: Network | None) -> Firewall:
        """The project's group "default" with its rules (one call; one more for a network:
        with port security off there, nothing is filtered)."""
        with self._mapped():
            if network is not None:
                net = self.conn.network.get_network(network.id)
                if net.is_port_security_enabled is False:
                    return Firewall(enforced=False)
            project = self.conn.current_project_id
            found = list(self.conn.network.security_groups(name="default", project_id=project))
        if not found:
            raise NotFoundError(self.site, f"no security group default in project {project}")
        group = found[0]
        rules = [
            rule
            for r in group.security_group_rules or ()
            if r.get("direction") == "ingress" and r.get("ethertype") == "IPv4"
            for rule in _ingress(SecurityGroupRule.existing(**r))
        ]
        return Firewall(groups=(str(group.id),), rules=tuple(rules))

    def _rule(self, **kw: Any) -> None:
        with suppress(osx.ConflictException):  # there already (a repeated step)
            self.conn.network.create_security_group_rule(
                direction="ingress", ether_type="IPv4", **kw
            )

    def make_group(
        self,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
        network: Network | None,
    ) -> str:
        """Neutron's groups are the project's, on every network: `network` does not matter."""
        mark = described(tags)
        with self._mapped():
            found = [
                g
                for g in self.conn.network.security_groups(name=name)
                if (g.description or "") == mark
            ]
            group = (
                found[0]
                if found
                else self.conn.network.create_security_group(name=name, description=mark)
            )
            for port in ports:
                for source in sources:
                    self._rule(
                        security_group_id=group.id,
                        protocol="tcp",
                        port_range_min=port,
                        port_range_max=port,
                        remote_ip_prefix=str(source),
                    )
            self._rule(security_group_id=group.id, remote_group_id=group.id)
        return str(group.id)

    def open_ports(
        self,
        server_id: str,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
    ) -> str:
        group = self.make_group(name, ports, sources, tags, None)
        with self._mapped():
            self._attach(server_id, group)
        return group

    def _attach(self, server_id: str, group: str) -> None:
        port = self._port(server_id)
        held = list(port.security_group_ids or ())
        if group not in held:
            self.conn.network.update_port(port, security_group_ids=[*held, group])

    def attach_group(self, server_id: str, group: str) -> str:
        with self._mapped():
            found = self.conn.network.find_security_group(group, ignore_missing=True)
            if found is None:
                raise InvalidRequestError(self.site, f"no security group {group!r}")
            self._attach(server_id, found.id)
        return str(found.id)

    def groups_of(self, deployment: str) -> list[str]:
        mark = f"{DEPLOYMENT_TAG}={deployment}"
        with self._mapped():
            found = [
                g
                for g in self.conn.network.security_groups()
                if mark in (g.description or "").split()
            ]
        return sorted(str(g.id) for g in found)

    def delete_group(self, ref: str) -> None:
        # In use (409) until the last port holding it is gone: transient, retried.
        self._call(self.conn.network.delete_security_group, ref, ignore_missing=True)
