"""The sites file: where nodes come from, and how to reach each site's API.

Credentials are never stored here: the file names where they come from (an AWS
profile and its config files, read by botocore; a password file, mode 0600), so
the file itself can be shown, logged and committed. Which file is used:
    --sites FILE  >  $INTERLOCK_SITES  >  ~/.config/interlock/sites.yaml  >  a plugin's
(entry points `interlock.sites`: the lab offers its running lab's sites file).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from interlock import plugins, yamlfile
from interlock.errors import InterlockError

if TYPE_CHECKING:
    from interlock.state.url import StateUrl


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _file(path: Path) -> Path:
    """A file the config names: there, and a regular file (a FIFO would hang its reader).
    Errors never repeat the value: a secret pasted where a path belongs stays unshown."""
    path = path.expanduser()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except OSError as e:
        raise ValueError(f"cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    return path


def _private_key(path: Path) -> Path:
    """A private key interlock can use unattended: an unencrypted key in a file."""
    if "PRIVATE KEY-----" in str(path):  # pasted where its path belongs
        raise ValueError("a private key's text, not the path of its file")
    path = _file(path)
    if path.stat().st_size > 64 * 1024:
        raise ValueError("larger than a private key file")
    data = path.read_bytes()
    if b"PRIVATE KEY-----" not in data:
        raise ValueError("not a private key (a public key, or another file?)")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        if b"OPENSSH PRIVATE KEY" in data:
            serialization.load_ssh_private_key(data, password=None)
        else:
            serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(
            "protected by a passphrase: interlock needs a key it can use unattended"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a private key it can read") from None
    return path


def _endpoint(url: str) -> str:
    """An API endpoint: an http(s) URL with a host, and no credentials in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in the URL (give them in their files)")
    return url


File = Annotated[Path, AfterValidator(_file)]
PrivateKeyFile = Annotated[Path, AfterValidator(_private_key)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]
# Site names: what `--site` and output show (never read as markup, but kept plain).
SiteName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]


class Limits(Strict):
    concurrency: int = Field(default=16, ge=1, le=1024)  # nodes in flight at once
    rate: float = Field(default=20.0, gt=0)  # API calls per second
    # Seconds a node gets to answer SSH and accept a login (boot delays, slow keys).
    ssh_timeout: float = Field(default=300.0, gt=0, le=3600)


class DeclaredProfile(Strict):
    """Facts about a site's behaviour that its operator knows (they win over learned ones)."""

    login_users: dict[str, str] = {}  # image id or distro -> login account
    floating_ip: bool | None = None  # True: a floating/elastic IP is always needed
    public_network: str | None = None  # the network that reaches the outside
    floating_network: str | None = None  # where floating IPs come from (OpenStack)
    # An existing security group (name or id) nodes get where SSH is blocked, instead of
    # the one interlock would make (GCE: a network tag its firewall rules target).
    security_group: str | None = Field(default=None, min_length=1, max_length=255)


class SiteBase(Strict):
    region: str = ""
    limits: Limits = Limits()
    profile: DeclaredProfile = DeclaredProfile()
    # Where SSH comes from, for the security group interlock opens where a site blocks it.
    # Empty: this host's address towards the node (behind NAT, name the NAT's address).
    # 0.0.0.0/0 is never assumed: write it here to mean it.
    ssh_from: list[ipaddress.IPv4Network] = Field(default=[], max_length=50)


class AwsSite(SiteBase):
    provider: Literal["aws"]
    endpoint: Endpoint | None = None  # None: AWS itself
    aws_profile: str | None = None
    aws_config_file: File | None = None
    aws_credentials_file: File | None = None
    # How the node key reaches the node. user-data: a cloud-config in RunInstances' user
    # data, read by cloud-init, which every image interlock picks runs (one call a node:
    # at scale, within EC2's throttles); the public half stays readable in the instance's
    # user data, as a key pair's stays in its metadata. key-pair: an EC2 key pair made and
    # deleted per node (two calls more), for a site whose images' agent reads keys from
    # the instance metadata only (cloud-init removed or replaced).
    node_key: Literal["key-pair", "user-data"] = "user-data"

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", v):
            raise ValueError("not an AWS region name (like us-east-1)")
        return v


class Machine(Strict):
    name: str
    uuid: str
    public_ip: str
    vcpus: int
    ram_mib: int
    disk_gib: int = 0
    distro: str
    version: str


class MetalSite(SiteBase):
    provider: Literal["metal"]
    endpoint: Endpoint  # Redfish service root, e.g. https://bmc.example/redfish/v1
    username: str
    password_file: File
    pool_key: PrivateKeyFile  # gives root on a freshly installed machine
    machines: list[Machine] = Field(min_length=1)


class OpenstackSite(SiteBase):
    provider: Literal["openstack"]
    cloud: str  # the clouds.yaml entry, read by openstacksdk's own config loader
    clouds_file: File | None = None  # None: openstacksdk's search path (OS_CLIENT_CONFIG_FILE…)


class GceSite(SiteBase):
    provider: Literal["gce"]
    project: str
    zone: str  # e.g. europe-west1-b; the region is derived from it
    # A service-account key file; None: Application Default Credentials (google-auth).
    credentials_file: File | None = None
    # default: the key file above, or Application Default Credentials. anonymous: no
    # credentials at all, for an endpoint of one's own that asks for none (the lab's).
    credentials: Literal["default", "anonymous"] = "default"
    endpoint: Endpoint | None = None  # None: compute.googleapis.com
    # Where public images are looked up (GCE keeps each vendor's images in its own project).
    image_projects: list[str] = [
        "ubuntu-os-cloud",
        "debian-cloud",
        "rocky-linux-cloud",
        "centos-cloud",
        "rhel-cloud",
    ]

    @model_validator(mode="after")
    def _anonymous_needs_an_endpoint(self) -> GceSite:
        # Never unauthenticated requests to Google itself; and a key file says otherwise.
        if self.credentials == "anonymous" and self.endpoint is None:
            raise yamlfile.FieldProblem(("credentials",), "anonymous needs an endpoint of its own")
        if self.credentials == "anonymous" and self.credentials_file is not None:
            raise yamlfile.FieldProblem(("credentials",), "anonymous takes no credentials_file")
        return self


class PluginSite(SiteBase):
    """A site of a provider kind another package registers (entry points
    `interlock.providers`); that provider reads the rest of its fields."""

    model_config = ConfigDict(extra="allow", frozen=True)
    provider: str

    @field_validator("provider")
    @classmethod
    def _registered(cls, v: str) -> str:
        kinds = plugins.names(plugins.PROVIDERS)
        if v not in kinds:
            raise ValueError(f"unknown provider {v!r}; installed: {', '.join(kinds)}")
        return v


BUILTIN = {"aws": AwsSite, "metal": MetalSite, "openstack": OpenstackSite, "gce": GceSite}


def _kind(v: Any) -> str:
    kind = v.get("provider") if isinstance(v, dict) else getattr(v, "provider", None)
    return kind if isinstance(kind, str) and kind in BUILTIN else "plugin"


SiteConfig = Annotated[
    Annotated[AwsSite, Tag("aws")]
    | Annotated[MetalSite, Tag("metal")]
    | Annotated[OpenstackSite, Tag("openstack")]
    | Annotated[GceSite, Tag("gce")]
    | Annotated[PluginSite, Tag("plugin")],
    Discriminator(_kind),
]


class SitesFile(Strict):
    sites: dict[SiteName, SiteConfig] = Field(min_length=1)
    # Private key files whose public halves get root on every node.
    platform_keys: list[PrivateKeyFile] = []
    # Where state and durable work live: SQLite files in the home by default, or
    # postgresql://… shared by several workers ($INTERLOCK_STATE_URL wins over it).
    state_url: str | None = Field(default=None, min_length=1)

    @field_validator("state_url")
    @classmethod
    def _state_url(cls, v: str | None) -> str | None:
        from interlock.state.url import StateUrl

        if v is not None:
            try:
                StateUrl.parse(v, Path("."), where="state_url")
            except InterlockError as e:
                raise ValueError(str(e).removeprefix("state_url: ")) from None
        return v


def home() -> Path:
    """interlock's own state: node keys in flight, the store, the platform key."""
    env = os.environ.get("INTERLOCK_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "interlock"


def state_url(home: Path, sites: SitesFile | None = None) -> StateUrl:
    """Where state lives: $INTERLOCK_STATE_URL, else the sites file's `state_url`, else
    SQLite files in the home."""
    from interlock.state.url import StateUrl

    env = os.environ.get("INTERLOCK_STATE_URL")
    if env:
        return StateUrl.parse(env, home, where="INTERLOCK_STATE_URL")
    if sites is not None and sites.state_url:
        return StateUrl.parse(sites.state_url, home)
    return StateUrl.default(home)


def sites_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get("INTERLOCK_SITES")
    if env:
        return Path(env)
    user = Path(os.path.expanduser("~/.config/interlock/sites.yaml"))
    if user.exists():
        return user
    # Another package may offer a default (the lab: its running lab's sites file).
    for _, offered in plugins.offered(plugins.SITES):
        return Path(offered)
    return user


def load_sites(path: Path) -> SitesFile:
    missing = "no sites file: write one (see the README), or start the lab: `interlock lab up`"
    return yamlfile.load(path, SitesFile, missing)
