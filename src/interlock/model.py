"""Normalized types: what every provider's metadata becomes, and what a request asks for."""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

# public: boot here, the address is reachable; private: boot here, a floating IP is needed;
# external-usable / -unusable: floating IPs come (or cannot come) from here; never booted on.
# The eight allocation steps (see DESIGN.md), by the names fix-ups, site files' ground
# truth and the interop suite use.
StepName = Literal[
    "node_key",
    "metadata",
    "selection",
    "request",
    "public_address",
    "login",
    "root_access",
    "key_removal",
]
STEPS: tuple[str, ...] = get_args(StepName)

NetworkRole = Literal["public", "private", "external-usable", "external-unusable"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Flavor(Frozen):
    id: str
    name: str
    vcpus: int
    ram_mib: int
    disk_gib: int = 0
    gpus: int = 0
    arch: str = "x86_64"


class Image(Frozen):
    id: str
    name: str
    distro: str  # lower case: ubuntu, debian, amzn, rhel, centos, fedora …
    version: str
    arch: str = "x86_64"
    # Login names the metadata suggests (e.g. os_admin_user), most likely first.
    login_hints: tuple[str, ...] = ()
    created: str = ""
    # Where the image only comes with certain hardware (installed machines): their flavor ids.
    only_flavors: tuple[str, ...] = ()


class Network(Frozen):
    id: str
    name: str
    role: NetworkRole
    evidence: str  # what decided the role, for `interlock plan`
    # For private networks: whether a router takes them outside (a floating IP can reach them).
    reaches_outside: bool = True


class Metadata(Frozen):
    flavors: tuple[Flavor, ...]
    images: tuple[Image, ...]
    networks: tuple[Network, ...]


class Traits(Frozen):
    """What a request asks of each node."""

    cpus: int = Field(default=1, ge=1, le=512)
    memory_gib: float = Field(default=0.5, gt=0, le=4096)
    os: str = "ubuntu-24.04"
    arch: Literal["x86_64", "arm64"] = "x86_64"

    @field_validator("os")
    @classmethod
    def _os(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z]+(-[0-9][0-9.]*)?", v):
            raise ValueError("write the OS as DISTRO or DISTRO-VERSION, e.g. ubuntu-24.04")
        return v

    @property
    def distro(self) -> str:
        return self.os.split("-", 1)[0]

    @property
    def version(self) -> str | None:
        parts = self.os.split("-", 1)
        return parts[1] if len(parts) == 2 else None


class Choice(Frozen):
    """What selection picked for a site, and why."""

    flavor: Flavor
    image: Image
    network: Network | None
    needs_floating_ip: bool
    reasons: tuple[str, ...]
