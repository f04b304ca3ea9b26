"""Google Compute Engine through the official SDK (google-cloud-compute, REST transport).

What differs from the other clouds:

- No key-pair API. The node key travels in the instance's metadata item `ssh-keys`
  as `interlock:<public key>`; Google's guest agent creates the account `interlock`
  (with sudo) and writes its authorized_keys. `register_key` only hands back the
  ref; the ref becomes the instance label `interlock-key`, by which `key_exists`
  and `delete_key` find the instances carrying the key. Deleting it rewrites the
  instance metadata without `ssh-keys` (the agent then drops the key on the node).
  The instance also sets `enable-oslogin=FALSE`: with OS Login on, metadata keys
  are ignored.
- Tags become labels: keys and values are lower case `[a-z0-9_-]`, at most 63
  characters, so `interlock:node` is the label `interlock-node`.
- Instance names are unique per zone: the server id is the instance name (the node).
- The public address is an access config (ONE_TO_ONE_NAT) on the first network
  interface: an ephemeral external IP at creation; `attach_public_ip` reserves a
  static regional address and swaps it in, `release_public_ip` undoes that.
- Firewalls are rules of the network, aimed at instances by network tag: the "group"
  interlock opens is a pair of rules (SSH from the operator; everything between the
  deployment's nodes) aimed at the tag `interlock-<deployment>`, which `open_ports` adds to
  the instance. Rules take no labels: their description carries the ownership tags.
- Mutations return zonal, regional or global operations, waited for by the client plumbing
  (interlock.providers.gce.client), which also maps every error into the taxonomy.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from google.auth.credentials import Credentials
from google.cloud import compute_v1

from interlock.config import GceSite
from interlock.firewall import ANYWHERE, SSH, Firewall, Ingress, Protocol
from interlock.model import Flavor, Image, Metadata, Network
from interlock.providers.base import (
    InvalidRequestError,
    NodeRequest,
    NotFoundError,
    ProviderError,
    ServerInfo,
    described,
)
from interlock.providers.gce.client import GceClient, last
from interlock.providers.normalize import DEFAULT_USERS, distro_version

if TYPE_CHECKING:
    from interlock.state import Store

API = "https://compute.googleapis.com"  # where the SDK goes without an endpoint
LOGIN_USER = "interlock"  # the account the guest agent creates from `ssh-keys`
SSH_KEYS = "ssh-keys"
KEY_LABEL = "interlock-key"
NODE_LABEL = "interlock-node"
NAT_NAME = "External NAT"
PROTOCOLS: dict[str, Protocol] = {"all": "all", "tcp": "tcp", "6": "tcp", "udp": "udp",
    "17": "udp", "icmp": "icmp", "1": "icmp"}  # fmt: skip
# requestId must be a UUID: a request's token becomes one, the same for every try.
TOKENS = uuid.UUID("5f1c7a3e-9b2d-4e8f-a6c1-0d3b7e9f2a4c")
ARM_PREFIXES = ("t2a", "c4a", "n4a", "a4x")  # machine series on Arm (Ampere, Axion, Grace)

STATES = {
    "PROVISIONING": "pending",
    "STAGING": "pending",
    "REPAIRING": "pending",
    "RUNNING": "running",
    "STOPPING": "stopped",
    "SUSPENDING": "stopped",
    "SUSPENDED": "stopped",
    "TERMINATED": "stopped",
}


def label(text: str) -> str:
    """A tag key or value as a GCE label: lower case [a-z0-9_-], at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def _ports(spec: list[str]) -> list[tuple[int, int] | None]:
    """GCE's ports ("22", "8000-8080"; none: every port)."""
    if not spec:
        return [None]
    out: list[tuple[int, int] | None] = []
    for p in spec:
        low, _, high = p.partition("-")
        out.append((int(low), int(high or low)))
    return out


def _info(inst: compute_v1.Instance) -> ServerInfo:
    public = private = None
    if inst.network_interfaces:
        nic = inst.network_interfaces[0]
        private = nic.network_i_p or None
        if nic.access_configs:
            public = nic.access_configs[0].nat_i_p or None
    return ServerInfo(inst.name, STATES.get(inst.status, "pending"), public, private)


def _address_name(instance: str) -> str:
    return f"{instance}-ip"[:63]


class GceProvider:
    bootstrap: tuple[Path, str] | None = None

    def __init__(
        self,
        site: str,
        config: GceSite,
        store: Store | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.site = site
        self.config = config
        self.api = GceClient(site, config, credentials)

    @property
    def api_host(self) -> str:
        return urlsplit(self.config.endpoint or API).hostname or ""

    # -- metadata --------------------------------------------------------------

    def metadata(self) -> Metadata:
        return Metadata(flavors=self._flavors(), images=self._images(), networks=self._networks())

    def _flavors(self) -> tuple[Flavor, ...]:
        api = self.api
        types = list(api.call(api.machine_types.list, project=api.project, zone=api.zone))
        flavors = []
        for t in types:
            if t.deprecated.state and t.deprecated.state != "ACTIVE":
                continue
            arm = t.architecture == "ARM64" or t.name.startswith(ARM_PREFIXES)
            flavors.append(
                Flavor(
                    id=t.name,
                    name=t.name,
                    vcpus=t.guest_cpus,
                    ram_mib=t.memory_mb,
                    gpus=sum(a.guest_accelerator_count for a in t.accelerators),
                    arch="arm64" if arm else "x86_64",
                )
            )
        return tuple(flavors)

    def _images(self) -> tuple[Image, ...]:
        images = []
        for project in self.config.image_projects:
            raw = list(self.api.call(self.api.images.list, project=project))
            for i in raw:
                if i.deprecated.state and i.deprecated.state != "ACTIVE":
                    continue
                if i.status and i.status != "READY":
                    continue
                # GCE writes Ubuntu versions without the dot (ubuntu-2404-lts-amd64).
                texts = [
                    re.sub(r"(ubuntu-(?:[a-z]+-)?)(\d\d)(\d\d)\b", r"\1\2.\3", t)
                    for t in (i.family, i.name)
                ]
                found = distro_version(*texts, i.description)
                if found is None:
                    continue
                distro, version = found
                images.append(
                    Image(
                        id=i.self_link,
                        name=i.name,
                        distro=distro,
                        version=version,
                        arch="arm64" if i.architecture == "ARM64" else "x86_64",
                        login_hints=(LOGIN_USER, *DEFAULT_USERS.get(distro, ())),
                        created=i.creation_timestamp,
                    )
                )
        return tuple(images)

    def _networks(self) -> tuple[Network, ...]:
        region = self.api.region
        raw = list(self.api.call(self.api.networks.list, project=self.api.project))
        networks = []
        for n in sorted(raw, key=lambda n: (n.name != "default", n.name)):
            here = sorted(s for s in n.subnetworks if f"/regions/{region}/subnetworks/" in s)
            if here:  # a subnet-mode VPC: the node goes on its subnet in this region
                networks.append(
                    Network(
                        id=here[0],
                        name=n.name,
                        role="public",
                        evidence=f"subnetwork {last(here[0])} in {region}: an ephemeral "
                        "external IP through a ONE_TO_ONE_NAT access config",
                    )
                )
            elif not n.subnetworks and not n.auto_create_subnetworks:  # a legacy network
                networks.append(
                    Network(
                        id=n.self_link,
                        name=n.name,
                        role="public",
                        evidence="legacy network: an ephemeral external IP through a "
                        "ONE_TO_ONE_NAT access config",
                    )
                )
            else:
                networks.append(
                    Network(
                        id=n.self_link,
                        name=n.name,
                        role="external-unusable",
                        evidence=f"no subnetwork in {region}",
                    )
                )
        return tuple(networks)

    # -- keys ------------------------------------------------------------------

    def register_key(self, name: str, public_key: str, tags: dict[str, str] | None = None) -> str:
        return name  # no key API: the key goes into the instance metadata at creation

    def key_exists(self, ref: str) -> bool:
        return any(
            any(item.key == SSH_KEYS for item in i.metadata.items)
            for i in self.api.labelled(KEY_LABEL, label(ref))
        )

    def delete_key(self, ref: str) -> None:
        for inst in self.api.labelled(KEY_LABEL, label(ref)):
            items = list(inst.metadata.items)
            if not any(item.key == SSH_KEYS for item in items):
                continue
            kept = compute_v1.Metadata(
                fingerprint=inst.metadata.fingerprint,
                items=[item for item in items if item.key != SSH_KEYS],
            )
            with suppress(NotFoundError):  # deleted meanwhile: the key went with it
                self.api.zonal(
                    self.api.instances.set_metadata_unary,
                    instance=inst.name,
                    metadata_resource=kept,
                )

    # -- nodes -----------------------------------------------------------------

    def create_node(self, request: NodeRequest) -> ServerInfo:
        labels = {label(k): label(v) for k, v in request.tags.items()}
        if request.key_ref:
            labels[KEY_LABEL] = label(request.key_ref)
        items = [compute_v1.Items(key="enable-oslogin", value="FALSE")]
        if request.public_key:
            items.append(
                compute_v1.Items(key=SSH_KEYS, value=f"{LOGIN_USER}:{request.public_key.strip()}")
            )
        nic = compute_v1.NetworkInterface(
            access_configs=[compute_v1.AccessConfig(name=NAT_NAME, type_="ONE_TO_ONE_NAT")]
        )
        where = request.network.id if request.network else "global/networks/default"
        if "/subnetworks/" in where:
            nic.subnetwork = where
        else:
            nic.network = where
        instance = compute_v1.Instance(
            name=request.name,
            machine_type=f"zones/{self.api.zone}/machineTypes/{request.flavor.id}",
            disks=[
                compute_v1.AttachedDisk(
                    boot=True,
                    auto_delete=True,
                    initialize_params=compute_v1.AttachedDiskInitializeParams(
                        source_image=request.image.id
                    ),
                )
            ],
            network_interfaces=[nic],
            labels=labels,
            metadata=compute_v1.Metadata(items=items),
        )
        if request.groups:  # network tags: the firewall rules aimed at them apply from the start
            instance.tags = compute_v1.Tags(items=list(dict.fromkeys(request.groups)))
        api = self.api
        insert = compute_v1.InsertInstanceRequest(
            project=api.project, zone=api.zone, instance_resource=instance
        )
        if request.token:
            # Tried again with the same requestId, GCE answers with the first try's operation.
            insert.request_id = str(uuid.uuid5(TOKENS, request.token))
        api.wait(api.call(api.instances.insert_unary, request=insert))
        return ServerInfo(request.name, "pending", None, None)  # the operation tells no more

    def describe_node(self, server_id: str) -> ServerInfo:
        try:
            return _info(self.api.instance(server_id))
        except NotFoundError:
            return ServerInfo(server_id, "gone", None, None)

    def describe_nodes(self, server_ids: list[str]) -> dict[str, ServerInfo]:
        found = {i.name: i for i in self.api.named(server_ids)}
        return {
            i: _info(found[i]) if i in found else ServerInfo(i, "gone", None, None)
            for i in server_ids
        }

    def find_node(self, name: str) -> str | None:
        try:
            inst = self.api.instance(name)
        except NotFoundError:
            return None
        return name if inst.labels.get(NODE_LABEL) == label(name) else None

    def _address(self, ref: str) -> compute_v1.Address:
        api = self.api
        found: compute_v1.Address = api.call(
            api.addresses.get, project=api.project, region=api.region, address=ref
        )
        return found

    def attach_public_ip(
        self, server_id: str, tags: dict[str, str] | None = None
    ) -> tuple[str, str]:
        api = self.api
        ref = _address_name(server_id)
        address = compute_v1.Address(
            name=ref,
            description=f"interlock: the public address of {server_id}",
            labels={label(k): label(v) for k, v in (tags or {}).items()},
        )
        try:
            api.regional(api.addresses.insert_unary, address_resource=address)
        except InvalidRequestError as e:
            if "alreadyExists" not in e.detail:  # a repeated step: reuse what it reserved
                raise
        try:
            ip = self._address(ref).address
            inst = api.instance(server_id)
            nic = inst.network_interfaces[0]
            current = list(nic.access_configs)
            if not any(c.nat_i_p == ip for c in current):
                for old in current:
                    self._delete_access_config(server_id, nic.name, old.name)
                config = compute_v1.AccessConfig(name=NAT_NAME, type_="ONE_TO_ONE_NAT", nat_i_p=ip)
                api.zonal(
                    api.instances.add_access_config_unary,
                    instance=server_id,
                    network_interface=nic.name,
                    access_config_resource=config,
                )
        except ProviderError:
            with suppress(ProviderError):
                self.release_public_ip(ref)
            raise
        return ip, ref

    def public_ips_of(self, node: str) -> list[str]:
        # The static address of a node has its name from the node's (the instance's) name.
        try:
            self._address(_address_name(node))
        except NotFoundError:
            return []
        return [_address_name(node)]

    def release_public_ip(self, ref: str) -> None:
        try:
            address = self._address(ref)
        except NotFoundError:
            return
        if address.status == "IN_USE":
            for user in address.users:
                if "/instances/" in user:
                    self._detach(last(user), address.address)
        with suppress(NotFoundError):
            self.api.regional(self.api.addresses.delete_unary, address=ref)

    def _detach(self, instance: str, ip: str) -> None:
        """Take the access config holding `ip` off `instance` (gone already: nothing to do)."""
        try:
            inst = self.api.instance(instance)
            for nic in inst.network_interfaces:
                for config in nic.access_configs:
                    if config.nat_i_p == ip:
                        self._delete_access_config(instance, nic.name, config.name)
        except NotFoundError:
            return

    def _delete_access_config(self, instance: str, nic: str, config: str) -> None:
        self.api.zonal(
            self.api.instances.delete_access_config_unary,
            instance=instance,
            access_config=config,
            network_interface=nic,
        )

    def delete_node(self, server_id: str) -> None:
        with suppress(NotFoundError):
            self.api.zonal(self.api.instances.delete_unary, instance=server_id)

    # -- firewall rules and network tags -------------------------------------------------

    def _rules(self) -> list[compute_v1.Firewall]:
        return list(self.api.call(self.api.firewalls.list, project=self.api.project))

    def firewall(self, server_id: str) -> Firewall:
        return self._firewall(self.api.instance(server_id), self._rules())

    def firewalls(self, server_ids: list[str]) -> dict[str, Firewall]:
        """Two calls for all: the instances (one filtered listing), the project's rules."""
        found = self.api.named(server_ids)
        if not found:
            return {}
        rules = self._rules()
        return {i.name: self._firewall(i, rules) for i in found}

    @staticmethod
    def _firewall(inst: compute_v1.Instance, all_rules: list[compute_v1.Firewall]) -> Firewall:
        return GceProvider._wall(
            last(inst.network_interfaces[0].network),
            set(inst.tags.items),
            {a.email for a in inst.service_accounts},
            all_rules,
        )

    def _network(self, network: Network | None) -> str:
        """The (partial) URL of the VPC network a node on `network` is on: a subnetwork's is
        the network its Network is named after (metadata's networks)."""
        if network is None:
            return f"projects/{self.api.project}/global/networks/default"
        if "/subnetworks/" in network.id:
            return f"projects/{self.api.project}/global/networks/{network.name}"
        return network.id

    def default_firewall(self, network: Network | None) -> Firewall:
        """The network's rules aimed at every instance (no target tags or service accounts:
        create_node gives neither); one call, the project's rules."""
        return self._wall(last(self._network(network)), set(), set(), self._rules())

    @staticmethod
    def _wall(
        network: str, tags: set[str], accounts: set[str], all_rules: list[compute_v1.Firewall]
    ) -> Firewall:
        """The firewall of an instance on `network` (its name) with network `tags` and
        service `accounts`: the allow rules aimed at it."""
        rules, names = [], []
        # Allow rules only: a deny rule above them is not weighed (interlock adds none).
        for r in all_rules:
            if r.disabled or (r.direction or "INGRESS") != "INGRESS" or last(r.network) != network:
                continue
            aimed = list(r.target_tags) or list(r.target_service_accounts)
            if aimed and not (
                tags & set(r.target_tags) or accounts & set(r.target_service_accounts)
            ):
                continue
            names.append(r.name)
            sources: tuple[ipaddress.IPv4Network, ...] | None
            ranges = [s for s in r.source_ranges if ":" not in s]
            if ranges:
                sources = tuple(ipaddress.IPv4Network(s, strict=False) for s in ranges)
            elif r.source_tags or r.source_service_accounts:
                sources = None
            else:
                sources = (ANYWHERE,)
            for allowed in r.allowed:
                proto: Protocol | None = PROTOCOLS.get(allowed.I_p_protocol.lower())
                if proto is None:
                    continue
                for ports in _ports(list(allowed.ports)):
                    rules.append(Ingress(protocol=proto, ports=ports, sources=sources))
        return Firewall(groups=tuple(names), rules=tuple(rules))

    def _insert_rule(self, rule: compute_v1.Firewall) -> None:
        try:
            self.api.global_(self.api.firewalls.insert_unary, firewall_resource=rule)
        except InvalidRequestError as e:
            if "alreadyExists" not in e.detail:  # made by a node beside this one, or before
                raise

    def make_group(
        self,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
        network: Network | None,
    ) -> str:
        return self._made(self._network(network), name, ports, sources, tags)

    def _made(
        self,
        network: str,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
    ) -> str:
        """The rules aimed at the network tag `name` on `network` (made, or there already)."""
        mark = described(tags)
        tcp = compute_v1.Allowed(I_p_protocol="tcp", ports=[str(p) for p in ports])
        # One rule per set of ports (rules are not edited): "-ssh" for SSH alone.
        which = "ssh" if ports == (SSH,) else "tcp-" + "-".join(map(str, ports))
        self._insert_rule(compute_v1.Firewall(
            name=f"{name}-{which}"[:63], network=network, description=mark, direction="INGRESS",
            target_tags=[name], source_ranges=[str(s) for s in sources], allowed=[tcp],
        ))  # fmt: skip
        self._insert_rule(compute_v1.Firewall(
            name=f"{name}-internal", network=network, description=mark, direction="INGRESS",
            target_tags=[name], source_tags=[name],
            allowed=[compute_v1.Allowed(I_p_protocol="all")],
        ))  # fmt: skip
        return name

    def open_ports(
        self,
        server_id: str,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
    ) -> str:
        inst = self.api.instance(server_id)
        tag = self._made(inst.network_interfaces[0].network, name, ports, sources, tags)
        self._tag(inst, tag)
        return tag

    def _tag(self, inst: compute_v1.Instance, tag: str) -> None:
        if tag in inst.tags.items:
            return
        tags = compute_v1.Tags(fingerprint=inst.tags.fingerprint, items=[*inst.tags.items, tag])
        self.api.zonal(self.api.instances.set_tags_unary, instance=inst.name, tags_resource=tags)

    def attach_group(self, server_id: str, group: str) -> str:
        self._tag(self.api.instance(server_id), group)  # a network tag the rules aim at
        return group

    def groups_of(self, deployment: str) -> list[str]:
        mark = f"interlock:deployment={deployment}"
        return sorted(r.name for r in self._rules() if mark in (r.description or "").split())

    def delete_group(self, ref: str) -> None:
        with suppress(NotFoundError):
            self.api.global_(self.api.firewalls.delete_unary, firewall=ref)
