"""Normalized types: what every provider's metadata becomes, and what a request asks for."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

# public: boot here, the address is reachable; private: boot here, a floating IP is needed;
# external-usable / -unusable: floating IPs come (or cannot come) from here; never booted on.
# The eight allocation steps (see DESIGN.md), by the names fix-ups, site files' ground
# truth and the interop suite use; `firewall` is step 5's second half (SSH opened where the
# node's security groups block it), named apart because clouds differ on it alone.
StepName = Literal[
    "node_key",
    "metadata",
    "selection",
    "request",
    "public_address",
    "firewall",
    "login",
    "root_access",
    "key_removal",
]
STEPS: tuple[StepName, ...] = get_args(StepName)
# How people read each step in progress lines and errors ("public address: …").
STEP_LABELS: dict[StepName, str] = {
    "node_key": "node key",
    "metadata": "metadata",
    "selection": "selection",
    "request": "request",
    "public_address": "public address",
    "firewall": "firewall",
    "login": "login",
    "root_access": "root access",
    "key_removal": "remove node key",
}

NetworkRole = Literal["public", "private", "external-usable", "external-unusable"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fixup(Frozen):
    """What interlock had to do for a step to work on a site: data all the way to reports.
    Written (JSON, state) as "step: text", the form people read."""

    step: StepName
    text: str

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, v: Any) -> Any:
        if isinstance(v, str):
            step, _, text = v.partition(": ")
            return {"step": step, "text": text}
        return v

    @model_serializer
    def _as_text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return f"{self.step}: {self.text}"


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
    # The router that takes a private network outside, where a router decided its role.
    router: str | None = None
    # Its address ranges where the API shows them (a deployment's own ranges, such as a
    # pod network, must not overlap them).
    cidrs: tuple[str, ...] = ()


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
    """What selection picked for a site, and why. `needs_floating_ip` is decided here
    once (declared > learned > the network's role) and only read after."""

    flavor: Flavor
    image: Image
    network: Network | None
    needs_floating_ip: bool
    reasons: tuple[str, ...]
    fixups: tuple[Fixup, ...] = ()


class NodeFacts(Frozen):
    """What interlock knows of a node, as roles get it (attributes): from its site and
    record, and read on the node itself (distro, sizes, addresses as the node sees them)."""

    node: str
    deployment: str
    site: str
    provider: str
    distro: str
    version: str
    vcpus: int
    memory_mib: int
    hostname: str
    login_user: str
    public_address: str
    private_address: str
    network_cidr: str
