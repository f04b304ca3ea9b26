"""Site files: one emulated cloud's behaviour, as validated data.

A site file is YAML. Its schema is the pydantic models below; `docs/site-files.md`
documents every field. `load_site_file` turns any problem into one `SiteFileError`
that names the file, the field (with its line) and the problem, before anything starts.
"""

from __future__ import annotations

import ipaddress
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from interlock import yamlfile
from interlock.errors import InterlockError
from interlock.model import StepName
from interlock.yamlfile import FieldProblem

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
METAL_FIRST_HOST = 10  # metal machines' fixed addresses start at this host index
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
Seconds = Annotated[float, Field(ge=0, le=600)]
StepVerdict = Literal["works", "fixup", "fails"]
Init = Literal["minimal", "systemd"]


class SiteFileError(InterlockError):
    """A site file that cannot be used; the message names file, line, field and problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Behaviour(Strict):
    """First-boot behaviour of an image, as cloud-init would leave the machine."""

    login_user: str = Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    # redirect: root's authorized_keys carries cloud-init's "Please login as ..." (exit 142);
    # key: the instance key is installed for root as well; none: root gets no key at all.
    root_login: Literal["redirect", "key", "none"] = "redirect"
    password_auth: bool = False
    boot_delay: Seconds = 0.0
    # Seconds after sshd answers before the instance key lands (a slow metadata service).
    key_delay: Seconds = 0.0
    # incomplete: boot-finished is never written (post-provisioning left half done).
    post_provisioning: Literal["complete", "incomplete"] = "complete"
    # password: the login user's sudo asks for a password (root cannot be reached by key).
    sudo: Literal["nopasswd", "password"] = "nopasswd"
    # minimal: the lab's tiny init supervises sshd (fast, ~9 MiB a node); systemd:
    # /lib/systemd/systemd is PID 1, as on a cloud VM (systemctl, units, Docker).
    init: Init = "minimal"


class BehaviourOverrides(Strict):
    login_user: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    root_login: Literal["redirect", "key", "none"] | None = None
    password_auth: bool | None = None
    boot_delay: Seconds | None = None
    key_delay: Seconds | None = None
    post_provisioning: Literal["complete", "incomplete"] | None = None
    sudo: Literal["nopasswd", "password"] | None = None
    init: Init | None = None


class ImageSpec(BehaviourOverrides):
    """A cloud image: what the API shows, and how a node booted from it behaves."""

    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=255)
    os: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: str = Field(min_length=1)
    arch: Literal["x86_64", "arm64"] = "x86_64"
    # Extra metadata the API shows as is (e.g. os_distro, os_admin_user); may be empty.
    properties: dict[str, str] = {}


class FlavorSpec(Strict):
    name: str = Field(min_length=1, max_length=64)
    vcpus: int = Field(ge=1, le=512)
    ram_mib: int = Field(ge=128)
    disk_gib: int = Field(default=8, ge=1)
    gpus: int = Field(default=0, ge=0)
    arch: Literal["x86_64", "arm64"] = "x86_64"


class NetworkSpec(Strict):
    name: str = Field(min_length=1, max_length=64)
    # openstack only. external: router:external for the site's project; its cidr lies in
    # the public pool (floating IPs, or direct addresses when shared). shared: servers of
    # the project may boot on it. router: the external network a router takes it out to.
    external: bool = False
    shared: bool = False
    router: str | None = None
    cidr: ipaddress.IPv4Network
    # aws: True gives nodes a public address at boot; False: an elastic IP is needed.
    # gce: True: an access config without natIP gets an ephemeral external IP, as Google
    # gives one; False: it gets none (a static address must be reserved and attached).
    public: bool = False

    @field_validator("cidr")
    @classmethod
    def _placed(cls, v: ipaddress.IPv4Network, info: ValidationInfo) -> ipaddress.IPv4Network:
        if v.overlaps(LOOPBACK) and not info.data.get("external"):
            raise ValueError("a lab network must not overlap 127.0.0.0/8 (public pools live there)")
        if v.prefixlen > 29:
            raise ValueError("a lab network needs at least a /29")
        return v


class Quotas(Strict):
    """openstack: the project's quotas (None: the cloud's default). gce: the region's
    INSTANCES and STATIC_ADDRESSES quotas (None: no limit)."""

    floating_ips: int | None = Field(default=None, ge=0)
    instances: int | None = Field(default=None, ge=0)


class PublicSpec(Strict):
    """Public addresses: host loopback addresses forwarded into nodes."""

    pool: ipaddress.IPv4Network
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = [22]

    @field_validator("pool")
    @classmethod
    def _on_loopback(cls, v: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if not v.subnet_of(LOOPBACK):
            raise ValueError("public addresses must lie in 127.0.0.0/8 (traffic stays on loopback)")
        if v.network_address == ipaddress.IPv4Address("127.0.0.0") or v.prefixlen > 30:
            raise ValueError("choose a pool such as 127.10.0.0/16, not containing 127.0.0.x")
        return v


class FirewallSpec(Strict):
    """What filters a node's public address. enforced: the lab admits a connection only
    where the node's security groups (as the site's API holds them) allow its port from
    its source address. default_group: what a new VPC's or project's default group admits
    (closed: only its own members, as AWS and OpenStack make it; open: everything);
    unset: closed, except on metal, which has no security groups and filters nothing."""

    enforced: bool = True
    default_group: Literal["closed", "open"] | None = None


class Fault(Strict):
    """An API fault injected at `rate` (0..1) on calls of `action` ("*": every action)."""

    action: str = Field(min_length=1)
    error: str = Field(min_length=1)
    rate: float = Field(gt=0, le=1)
    status: int = Field(default=503, ge=400, le=599)
    message: str = "injected by the interlock lab"
    times: int | None = Field(default=None, ge=1)  # fires at most this often; None: no limit


class MachineGroup(Strict):
    """Physical machines of one hardware class (metal sites)."""

    prefix: Name
    count: int = Field(ge=1, le=1000)
    flavor: str
    image: str


class GroundTruth(Strict):
    """What the interop suite must find on this site, per allocation step."""

    steps: dict[StepName, StepVerdict] = {}
    # The interop suite's verdict per capability of interlock's guideline, as it must come out.
    capabilities: dict[str, Literal["YES", "PARTIAL", "NO", "NOT RUN"]] = {}
    notes: str = ""

    @model_validator(mode="after")
    def _known(self) -> GroundTruth:
        known = _capabilities()
        for name in self.capabilities:
            if name not in known:
                raise FieldProblem(
                    ("capabilities", name),
                    f"not a capability of interlock's guideline (one of: {', '.join(known)})",
                )
        return self


def _capabilities() -> list[str]:
    """The capability ids of interlock's built-in guideline (the ground truth's subject)."""
    from interlock.conform import guideline

    return [c.id for c in guideline.load().capabilities if c.status != "removed"]


GceProject = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")]
GceZone = Annotated[str, Field(pattern=r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")]


class GceOptions(Strict):
    """gce only: how the Compute Engine project differs (see emulators/gce)."""

    project: GceProject = "interlock-lab"
    zone: GceZone = "us-central1-a"  # its region (the zone without "-a") is the site's region
    # default: networks[0] is the project's auto-mode network `default`, with Google's four
    # default-allow rules (SSH and RDP from anywhere, ICMP, internal traffic); custom: every
    # network is a custom-mode VPC without firewall rules (ingress denied until one admits).
    network: Literal["default", "custom"] = "default"
    # The project's metadata `enable-oslogin` (an instance's own value wins over it).
    os_login: bool = False
    # The organisation enforces OS Login (constraint compute.requireOsLogin): metadata that
    # turns it off is refused (412 conditionNotMet) and the guest agent ignores `ssh-keys`.
    os_login_enforced: bool = False
    # The guest agent's `deprovision_remove`: an account whose `ssh-keys` entries are all gone
    # is deleted (True) or, as Google's default, kept without keys and sudo (False).
    deprovision_remove: bool = False
    # Seconds an operation stays RUNNING before its work starts (operations are asynchronous).
    operation_delay: Seconds = 0.0


class SiteSpec(Strict):
    name: Name
    kind: Literal["aws", "gce", "metal", "openstack"]
    description: str = ""
    region: str = "lab-1"
    public: PublicSpec
    networks: list[NetworkSpec] = Field(min_length=1)
    images: list[ImageSpec] = Field(min_length=1)
    flavors: list[FlavorSpec] = []
    defaults: Behaviour = Behaviour(login_user="root")
    machines: list[MachineGroup] = []
    faults: list[Fault] = []
    seed: int = 0
    quotas: Quotas = Quotas()
    firewall: FirewallSpec = FirewallSpec()
    ground_truth: GroundTruth = GroundTruth()
    gce: GceOptions | None = None  # gce sites only (None there: the defaults)

    @model_validator(mode="after")
    def _consistent(self) -> SiteSpec:
        # Errors name the field they are about (FieldProblem), not the site as a whole.
        _unique("images", "id", [i.id for i in self.images])
        _unique("flavors", "name", [f.name for f in self.flavors])
        _unique("networks", "name", [n.name for n in self.networks])
        _unique("machines", "prefix", [g.prefix for g in self.machines])
        names = {n.name: n for n in self.networks}
        for i, n in enumerate(self.networks):
            where = ("networks", i)
            if n.external and self.kind != "openstack":
                raise FieldProblem(
                    (*where, "external"), "external networks are for openstack sites"
                )
            if n.external and not n.cidr.subnet_of(self.public.pool):
                raise FieldProblem((*where, "cidr"), "an external network lies in the public pool")
            if n.router is not None and not (n.router in names and names[n.router].external):
                raise FieldProblem((*where, "router"), f"{n.router!r} is not an external network")
            if n.shared and not n.external:
                raise FieldProblem((*where, "shared"), "only external networks are shared here")
            for j, other in enumerate(self.networks[:i]):
                if n.cidr.overlaps(other.cidr):
                    raise FieldProblem((*where, "cidr"), f"overlaps networks[{j}] ({other.name})")
        images = {i.id for i in self.images}
        flavors = {f.name for f in self.flavors}
        for k, g in enumerate(self.machines):
            if g.image not in images:
                raise FieldProblem(("machines", k, "image"), "not an image of this site")
            if g.flavor not in flavors:
                raise FieldProblem(("machines", k, "flavor"), "not a flavor of this site")
        if self.kind == "metal" and not self.machines:
            raise FieldProblem(("machines",), "a metal site needs machines")
        if self.kind == "metal" and self.firewall.default_group == "closed":
            raise FieldProblem(
                ("firewall", "default_group"), "metal has no security groups: nothing closes it"
            )
        if self.kind == "gce":
            _gce_consistent(self)
        elif self.gce is not None:
            raise FieldProblem(("gce",), "only gce sites take gce options")
        machines = sum(g.count for g in self.machines)
        spaces: list[tuple[tuple[str | int, ...], ipaddress.IPv4Network]] = [
            (("public", "pool"), self.public.pool),
            (("networks", 0, "cidr"), self.networks[0].cidr),
        ]
        for field, net in spaces:
            # Machines take fixed addresses from the 11th host on (see emulators/metal.py).
            if machines > net.num_addresses - 2 - METAL_FIRST_HOST:
                raise FieldProblem(field, f"{machines} machines do not fit in {net}")
        return self

    def moved_to(self, pool: ipaddress.IPv4Network) -> SiteSpec:
        """This site with its public pool at `pool` (same size), and every network that lay
        in the old pool at the same place in the new one (see interlock_lab.claims)."""
        old = self.public.pool
        if pool.prefixlen != old.prefixlen:
            raise ValueError(f"{pool} is not the size of {old}")
        offset = int(pool.network_address) - int(old.network_address)

        def move(net: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
            return ipaddress.IPv4Network((int(net.network_address) + offset, net.prefixlen))

        networks = [
            n.model_copy(update={"cidr": move(n.cidr)}) if n.cidr.subnet_of(old) else n
            for n in self.networks
        ]
        public = self.public.model_copy(update={"pool": pool})
        return self.model_copy(update={"public": public, "networks": networks})

    @property
    def gce_options(self) -> GceOptions:
        return self.gce or GceOptions()

    @property
    def default_open(self) -> bool:
        """A new node's default group admits everything (or the site filters nothing)."""
        return self.kind == "metal" or self.firewall.default_group == "open"

    def behaviour(self, image: ImageSpec) -> Behaviour:
        """The image's behaviour: its own settings over the site's defaults."""
        own = {k: v for k, v in image.model_dump(include=set(Behaviour.model_fields)).items()}
        return self.defaults.model_copy(update={k: v for k, v in own.items() if v is not None})

    def image(self, image_id: str) -> ImageSpec:
        for i in self.images:
            if i.id == image_id:
                return i
        raise KeyError(image_id)

    def flavor(self, name: str) -> FlavorSpec:
        for f in self.flavors:
            if f.name == name:
                return f
        raise KeyError(name)


def _gce_consistent(site: SiteSpec) -> None:
    """A gce site: its region is its zone's, its images name their image project, and an
    auto-mode project has its `default` network first."""
    options = site.gce_options
    region = options.zone.rsplit("-", 1)[0]
    if site.region != region:
        raise FieldProblem(("region",), f"the region of zone {options.zone} is {region}")
    for i, image in enumerate(site.images):
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", image.id) or image.id != image.name:
            raise FieldProblem(("images", i, "id"), "a GCE image name (lower case), as its name")
        if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", image.properties.get("project", "")):
            raise FieldProblem(
                ("images", i, "properties"), "names the image's project (project: debian-cloud)"
            )
    if options.network == "default" and site.networks[0].name != "default":
        raise FieldProblem(
            ("networks", 0, "name"), "the project's auto-mode network is named default"
        )


def _unique(what: str, key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise FieldProblem((what, i, key), "appears twice")
        seen.add(n)


def builtin_dir() -> Path:
    return Path(str(resources.files("interlock_lab") / "sites"))


def builtin_sites() -> dict[str, Path]:
    """The site files that ship with the lab, by site name (file stem)."""
    return {p.stem: p for p in sorted(builtin_dir().glob("*.yaml"), key=lambda p: p.stem)}


def builtin_of_kind(kind: str) -> list[str]:
    """The names of the built-in sites of one kind (e.g. the OpenStack clouds)."""
    return [n for n, p in builtin_sites().items() if load_site_file(p).kind == kind]


def load_site_file(path: Path) -> SiteSpec:
    return yamlfile.load(path, SiteSpec, error=SiteFileError)
