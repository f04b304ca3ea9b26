"""The lab's Compute Engine resources as plain data, and how the v1 REST API shows them.

Field names are the REST API's (camelCase), as the SDK's JSON parser reads them; links are
this endpoint's own (`{url}/compute/v1/projects/...`), so a client could follow them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from interlock_lab.sitefile import ImageSpec

NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"  # Google's resource names (RFC 1035)


class GceError(Exception):
    """An API error as Google returns it: HTTP status, reason, message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> dict[str, Any]:
        domain = "usageLimits" if "Limit" in self.reason or "quota" in self.reason else "global"
        error = {"message": self.message, "domain": domain, "reason": self.reason}
        return {"error": {"code": self.code, "message": self.message, "errors": [error]}}


class OperationFailed(Exception):
    """An operation's work failed: shown in the operation (`error.errors[].code`)."""

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status


def not_found(path: str) -> GceError:
    return GceError(404, "notFound", f"The resource '{path}' was not found")


def invalid(message: str) -> GceError:
    return GceError(400, "invalid", message)


def now() -> str:
    """An RFC 3339 timestamp, as Google writes them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fingerprint(value: Any) -> str:
    """A resource part's fingerprint: changes with its content (8 bytes, base64)."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def numeric_id() -> str:
    return str(uuid.uuid4().int % (10**19))


@dataclass
class Links:
    """Resource URLs of one project at this endpoint."""

    base: str  # {url}/compute/v1
    project: str
    region: str
    zone: str

    def project_link(self, project: str | None = None) -> str:
        return f"{self.base}/projects/{project or self.project}"

    def zone_link(self) -> str:
        return f"{self.project_link()}/zones/{self.zone}"

    def region_link(self) -> str:
        return f"{self.project_link()}/regions/{self.region}"

    def instance(self, name: str) -> str:
        return f"{self.zone_link()}/instances/{name}"

    def machine_type(self, name: str) -> str:
        return f"{self.zone_link()}/machineTypes/{name}"

    def network(self, name: str) -> str:
        return f"{self.project_link()}/global/networks/{name}"

    def subnetwork(self, name: str) -> str:
        return f"{self.region_link()}/subnetworks/{name}"

    def address(self, name: str) -> str:
        return f"{self.region_link()}/addresses/{name}"

    def firewall(self, name: str) -> str:
        return f"{self.project_link()}/global/firewalls/{name}"

    def image(self, image: ImageSpec) -> str:
        return f"{self.project_link(image.properties['project'])}/global/images/{image.name}"


@dataclass
class AccessConfig:
    name: str
    nat_ip: str | None = None  # None: none yet (stopped), or none given (no external IP)
    static: bool = False  # the address is a reserved one (kept across stop/start)

    def show(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#accessConfig",
            "type": "ONE_TO_ONE_NAT",
            "name": self.name,
            "networkTier": "PREMIUM",
        }
        if self.nat_ip:
            out["natIP"] = self.nat_ip
        return out


@dataclass
class Instance:
    name: str
    machine_type: str
    image: ImageSpec
    network: str  # the VPC network's name (its one subnetwork in the region has it too)
    network_ip: str
    access_configs: list[AccessConfig]
    metadata: list[dict[str, str]]
    labels: dict[str, str]
    tags: list[str]
    description: str = ""
    service_accounts: list[dict[str, Any]] = field(default_factory=list)
    status: str = "PROVISIONING"
    id: str = field(default_factory=numeric_id)
    created: str = field(default_factory=now)
    last_start: str | None = None
    busy: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def node_id(self) -> str:
        return f"gce-{self.id}"  # unique in the lab, kept across stop/start (the disk)

    def item(self, key: str) -> str | None:
        return next((i.get("value", "") for i in self.metadata if i.get("key") == key), None)

    def show(self, links: Links) -> dict[str, Any]:
        nic: dict[str, Any] = {
            "kind": "compute#networkInterface",
            "name": "nic0",
            "network": links.network(self.network),
            "subnetwork": links.subnetwork(self.network),
            "networkIP": self.network_ip,
            "fingerprint": fingerprint([a.show() for a in self.access_configs]),
            "stackType": "IPV4_ONLY",
        }
        if self.access_configs:
            nic["accessConfigs"] = [a.show() for a in self.access_configs]
        out: dict[str, Any] = {
            "kind": "compute#instance",
            "id": self.id,
            "creationTimestamp": self.created,
            "name": self.name,
            "description": self.description,
            "tags": {"fingerprint": fingerprint(self.tags)},
            "machineType": links.machine_type(self.machine_type),
            "status": self.status,
            "zone": links.zone_link(),
            "canIpForward": False,
            "networkInterfaces": [nic],
            "disks": [
                {
                    "kind": "compute#attachedDisk",
                    "type": "PERSISTENT",
                    "mode": "READ_WRITE",
                    "source": f"{links.zone_link()}/disks/{self.name}",
                    "deviceName": "persistent-disk-0",
                    "index": 0,
                    "boot": True,
                    "autoDelete": True,
                    "interface": "SCSI",
                    "diskSizeGb": "10",
                    "licenses": [],
                    "architecture": "ARM64" if self.image.arch == "arm64" else "X86_64",
                }
            ],
            "metadata": {
                "kind": "compute#metadata",
                "fingerprint": fingerprint(self.metadata),
                "items": [dict(i) for i in self.metadata],
            },
            "serviceAccounts": self.service_accounts,
            "selfLink": links.instance(self.name),
            "scheduling": {
                "onHostMaintenance": "MIGRATE",
                "automaticRestart": True,
                "preemptible": False,
                "provisioningModel": "STANDARD",
            },
            "cpuPlatform": "Intel Broadwell",
            "labels": dict(self.labels),
            "labelFingerprint": fingerprint(self.labels),
            "startRestricted": False,
            "deletionProtection": False,
            "fingerprint": fingerprint([self.metadata, self.labels, self.tags]),
        }
        if self.tags:
            out["tags"]["items"] = list(self.tags)
        if self.last_start:
            out["lastStartTimestamp"] = self.last_start
        return out


@dataclass
class Address:
    name: str
    address: str
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)  # instance links
    id: str = field(default_factory=numeric_id)
    created: str = field(default_factory=now)

    def show(self, links: Links) -> dict[str, Any]:
        return {
            "kind": "compute#address",
            "id": self.id,
            "creationTimestamp": self.created,
            "name": self.name,
            "description": self.description,
            "address": self.address,
            "status": "IN_USE" if self.users else "RESERVED",
            "region": links.region_link(),
            "selfLink": links.address(self.name),
            "users": list(self.users),
            "networkTier": "PREMIUM",
            "labels": dict(self.labels),
            "labelFingerprint": fingerprint(self.labels),
            "addressType": "EXTERNAL",
        }


@dataclass
class Firewall:
    name: str
    network: str  # the network's name
    allowed: list[dict[str, Any]]  # [{"IPProtocol": "tcp", "ports": ["22"]}]
    source_ranges: list[str] = field(default_factory=list)
    source_tags: list[str] = field(default_factory=list)
    target_tags: list[str] = field(default_factory=list)
    description: str = ""
    direction: str = "INGRESS"
    priority: int = 1000
    disabled: bool = False
    id: str = field(default_factory=numeric_id)
    created: str = field(default_factory=now)

    def show(self, links: Links) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#firewall",
            "id": self.id,
            "creationTimestamp": self.created,
            "name": self.name,
            "description": self.description,
            "network": links.network(self.network),
            "priority": self.priority,
            "direction": self.direction,
            "allowed": [dict(a) for a in self.allowed],
            "disabled": self.disabled,
            "selfLink": links.firewall(self.name),
            "logConfig": {"enable": False},
        }
        for key, values in (
            ("sourceRanges", self.source_ranges),
            ("sourceTags", self.source_tags),
            ("targetTags", self.target_tags),
        ):
            if values:
                out[key] = list(values)
        return out


@dataclass
class Operation:
    """A zonal, regional or global operation: RUNNING until its work is done."""

    name: str
    scope: str  # "zones/<zone>", "regions/<region>" or "global"
    operation_type: str
    target_link: str
    target_id: str
    status: str = "RUNNING"
    id: str = field(default_factory=numeric_id)
    inserted: str = field(default_factory=now)
    ended: str | None = None
    error: OperationFailed | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @staticmethod
    def new_name() -> str:
        rand = uuid.uuid4().hex
        return f"operation-{int(time.time() * 1000)}-{rand[:13]}-{rand[13:21]}-{rand[21:29]}"

    def show(self, links: Links) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#operation",
            "id": self.id,
            "name": self.name,
            "operationType": self.operation_type,
            "targetLink": self.target_link,
            "targetId": self.target_id,
            "status": self.status,
            "user": "anonymous@interlock-lab",
            "progress": 100 if self.status == "DONE" else 0,
            "insertTime": self.inserted,
            "startTime": self.inserted,
            "selfLink": f"{links.project_link()}/{self.scope}/operations/{self.name}",
        }
        if self.scope.startswith("zones/"):
            out["zone"] = f"{links.project_link()}/{self.scope}"
        elif self.scope.startswith("regions/"):
            out["region"] = f"{links.project_link()}/{self.scope}"
        if self.ended:
            out["endTime"] = self.ended
        if self.error is not None:
            out["error"] = {"errors": [{"code": self.error.code, "message": self.error.message}]}
            out["httpErrorStatusCode"] = self.error.http_status
            out["httpErrorMessage"] = HTTP_MESSAGES.get(self.error.http_status, "ERROR")
        return out


HTTP_MESSAGES = {
    400: "BAD REQUEST",
    403: "FORBIDDEN",
    404: "NOT FOUND",
    409: "CONFLICT",
    412: "PRECONDITION FAILED",
    503: "SERVICE UNAVAILABLE",
}
