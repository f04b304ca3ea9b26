"""What a Compute Engine project shows from its site file: zone and region, machine
types, public images (in their image projects, with families), networks and their
subnetworks, the project's metadata, and the default network's firewall rules."""

from __future__ import annotations

import re
from typing import Any

from interlock_lab.emulators.base import stable_digits
from interlock_lab.emulators.gce.resources import Firewall, Links, fingerprint, not_found
from interlock_lab.sitefile import FlavorSpec, ImageSpec, NetworkSpec, SiteSpec

SHARED_CPU = re.compile(r"^(e2-(micro|small|medium)|f1-micro|g1-small)$")
IMAGE_PATH = re.compile(
    r"(?:projects/(?P<project>[a-z0-9-]+)/)?global/images/(?:family/(?P<family>[a-z0-9-]+)|(?P<name>[a-z0-9-]+))$"
)
CREATED = re.compile(r"v(\d{4})(\d{2})(\d{2})")


class Catalog:
    def __init__(self, spec: SiteSpec, links: Links) -> None:
        self.spec = spec
        self.links = links
        self.options = spec.gce_options
        self.networks = {n.name: n for n in spec.networks}

    # -- zone, region, project ------------------------------------------------------

    def zone(self) -> dict[str, Any]:
        return {
            "kind": "compute#zone",
            "id": stable_digits(f"zone/{self.links.zone}", 7),
            "name": self.links.zone,
            "description": self.links.zone,
            "status": "UP",
            "region": self.links.region_link(),
            "selfLink": self.links.zone_link(),
            "availableCpuPlatforms": ["Intel Broadwell", "AMD Milan"],
        }

    def region(self, quotas: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "kind": "compute#region",
            "id": stable_digits(f"region/{self.links.region}", 4),
            "name": self.links.region,
            "description": self.links.region,
            "status": "UP",
            "zones": [self.links.zone_link()],
            "quotas": quotas,
            "selfLink": self.links.region_link(),
        }

    def project_metadata(self) -> list[dict[str, str]]:
        on = self.options.os_login or self.options.os_login_enforced
        return [{"key": "enable-oslogin", "value": "TRUE"}] if on else []

    def project(self) -> dict[str, Any]:
        items = self.project_metadata()
        return {
            "kind": "compute#project",
            "id": stable_digits(f"project/{self.links.project}", 12),
            "name": self.links.project,
            "commonInstanceMetadata": {
                "kind": "compute#metadata",
                "fingerprint": fingerprint(items),
                "items": items,
            },
            "defaultNetworkTier": "PREMIUM",
            "selfLink": self.links.project_link(),
        }

    # -- machine types ------------------------------------------------------------

    def machine_type(self, f: FlavorSpec) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#machineType",
            "id": stable_digits(f"machineType/{f.name}", 10),
            "name": f.name,
            "description": f"{f.vcpus} vCPUs, {f.ram_mib / 1024:g} GB RAM",
            "guestCpus": f.vcpus,
            "memoryMb": f.ram_mib,
            "maximumPersistentDisks": 128,
            "maximumPersistentDisksSizeGb": "263168",
            "zone": self.links.zone,
            "selfLink": self.links.machine_type(f.name),
            "isSharedCpu": bool(SHARED_CPU.match(f.name)),
            "architecture": "ARM64" if f.arch == "arm64" else "X86_64",
        }
        if f.gpus:
            out["accelerators"] = [
                {"guestAcceleratorType": "nvidia-tesla-a100", "guestAcceleratorCount": f.gpus}
            ]
        return out

    def machine_types(self) -> list[dict[str, Any]]:
        return [self.machine_type(f) for f in self.spec.flavors]

    def flavor(self, name: str) -> FlavorSpec:
        try:
            return self.spec.flavor(name)
        except KeyError:
            raise not_found(
                f"projects/{self.links.project}/zones/{self.links.zone}/machineTypes/{name}"
            ) from None

    # -- images ---------------------------------------------------------------------

    def image_projects(self) -> list[str]:
        return sorted({i.properties["project"] for i in self.spec.images})

    def images(self, project: str) -> list[ImageSpec]:
        if project != self.links.project and project not in self.image_projects():
            raise not_found(f"projects/{project}")
        return [i for i in self.spec.images if i.properties["project"] == project]

    def image(self, project: str, name: str) -> ImageSpec:
        for i in self.images(project):
            if i.name == name:
                return i
        raise not_found(f"projects/{project}/global/images/{name}")

    def from_family(self, project: str, family: str) -> ImageSpec:
        """The newest image of a family (Google: the newest one not deprecated)."""
        found = [i for i in self.images(project) if i.properties.get("family") == family]
        if not found:
            raise not_found(f"projects/{project}/global/images/family/{family}")
        return max(found, key=lambda i: i.name)

    def source_image(self, source: str) -> ImageSpec:
        """An instance's `sourceImage`: a URL or partial URL of an image or of a family."""
        m = IMAGE_PATH.search(source)
        if m is None:
            raise not_found(source)
        project = m["project"] or self.links.project
        if m["family"]:
            return self.from_family(project, m["family"])
        return self.image(project, m["name"])

    def show_image(self, i: ImageSpec) -> dict[str, Any]:
        date = CREATED.search(i.name)
        created = f"{date[1]}-{date[2]}-{date[3]}T00:00:00.000-08:00" if date else "2025-01-01"
        out: dict[str, Any] = {
            "kind": "compute#image",
            "id": stable_digits(f"image/{i.properties['project']}/{i.name}", 19),
            "creationTimestamp": created,
            "name": i.name,
            "description": i.properties.get("description", f"{i.os} {i.version} ({i.arch})"),
            "sourceType": "RAW",
            "status": "READY",
            "diskSizeGb": "10",
            "selfLink": self.links.image(i),
            "labelFingerprint": fingerprint({}),
            "guestOsFeatures": [{"type": "VIRTIO_SCSI_MULTIQUEUE"}, {"type": "GVNIC"}],
            "architecture": "ARM64" if i.arch == "arm64" else "X86_64",
        }
        if "family" in i.properties:
            out["family"] = i.properties["family"]
        return out

    # -- networks -------------------------------------------------------------------

    def network(self, name: str) -> NetworkSpec:
        n = self.networks.get(name)
        if n is None:
            raise not_found(f"projects/{self.links.project}/global/networks/{name}")
        return n

    def auto_mode(self, n: NetworkSpec) -> bool:
        return self.options.network == "default" and n.name == "default"

    def show_network(self, n: NetworkSpec) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#network",
            "id": stable_digits(f"network/{n.name}", 19),
            "name": n.name,
            "selfLink": self.links.network(n.name),
            "autoCreateSubnetworks": self.auto_mode(n),
            "subnetworks": [self.links.subnetwork(n.name)],
            "routingConfig": {"routingMode": "REGIONAL"},
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL",
        }
        if self.auto_mode(n):
            out["description"] = "Default network for the project"
        return out

    def show_subnetwork(self, n: NetworkSpec) -> dict[str, Any]:
        return {
            "kind": "compute#subnetwork",
            "id": stable_digits(f"subnetwork/{n.name}", 19),
            "name": n.name,
            "network": self.links.network(n.name),
            "ipCidrRange": str(n.cidr),
            "gatewayAddress": str(n.cidr.network_address + 1),
            "region": self.links.region_link(),
            "selfLink": self.links.subnetwork(n.name),
            "privateIpGoogleAccess": False,
            "purpose": "PRIVATE",
            "stackType": "IPV4_ONLY",
            "fingerprint": fingerprint(str(n.cidr)),
        }

    def network_of(self, link: str) -> NetworkSpec:
        """The network a NIC names by its network or subnetwork URL (partial or full)."""
        m = re.search(r"(?:global/networks|regions/([a-z0-9-]+)/subnetworks)/([a-z0-9-]+)$", link)
        if m is None:
            raise not_found(link)
        if m[1] is not None and m[1] != self.links.region:
            raise not_found(f"projects/{self.links.project}/regions/{m[1]}/subnetworks/{m[2]}")
        return self.network(m[2])

    def default_rules(self) -> list[Firewall]:
        """The rules Google puts on a project's default network (priority 65534)."""
        if self.options.network != "default":
            return []
        internal = [str(n.cidr) for n in self.spec.networks if n.name == "default"]
        everything: list[dict[str, Any]] = [
            {"IPProtocol": p, "ports": ["0-65535"]} for p in ("tcp", "udp")
        ]
        rules: list[tuple[str, list[str], list[dict[str, Any]]]] = [
            ("default-allow-internal", ["0.0.0.0/0"], [*everything, {"IPProtocol": "icmp"}]),
            ("default-allow-ssh", ["0.0.0.0/0"], [{"IPProtocol": "tcp", "ports": ["22"]}]),
            ("default-allow-rdp", ["0.0.0.0/0"], [{"IPProtocol": "tcp", "ports": ["3389"]}]),
            ("default-allow-icmp", ["0.0.0.0/0"], [{"IPProtocol": "icmp"}]),
        ]
        return [
            Firewall(
                name=name,
                network="default",
                allowed=allowed,
                source_ranges=internal if name == "default-allow-internal" else sources,
                description=f"Allow {name.rsplit('-', 1)[1]} from anywhere"
                if name != "default-allow-internal"
                else "Allow internal traffic on the default network",
                priority=65534,
                id=stable_digits(f"firewall/{name}", 19),
            )
            for name, sources, allowed in rules
        ]
