"""The sites file: where nodes come from, and how to reach each site's API.

Credentials are never stored here: the file names where they come from (an AWS
profile and its config files, read by botocore; a password file, mode 0600), so
the file itself can be shown, logged and committed. Which file is used:
    --sites FILE  >  $INTERLOCK_SITES  >  ~/.config/interlock/sites.yaml  >  a plugin's
(entry points `interlock.sites`: the lab offers its running lab's sites file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from interlock import plugins, yamlfile


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class SiteBase(Strict):
    region: str = ""
    limits: Limits = Limits()
    profile: DeclaredProfile = DeclaredProfile()


class AwsSite(SiteBase):
    provider: Literal["aws"]
    endpoint: str | None = None  # None: AWS itself
    aws_profile: str | None = None
    aws_config_file: Path | None = None
    aws_credentials_file: Path | None = None


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
    endpoint: str  # Redfish service root, e.g. https://bmc.example/redfish/v1
    username: str
    password_file: Path
    pool_key: Path  # private key that gives root on a freshly installed machine
    machines: list[Machine] = Field(min_length=1)


class OpenstackSite(SiteBase):
    provider: Literal["openstack"]
    cloud: str  # the clouds.yaml entry, read by openstacksdk's own config loader
    clouds_file: Path | None = None  # None: openstacksdk's search path (OS_CLIENT_CONFIG_FILE…)


class GceSite(SiteBase):
    provider: Literal["gce"]
    project: str
    zone: str  # e.g. europe-west1-b; the region is derived from it
    # A service-account key file; None: Application Default Credentials (google-auth).
    credentials_file: Path | None = None
    endpoint: str | None = None  # None: compute.googleapis.com
    # Where public images are looked up (GCE keeps each vendor's images in its own project).
    image_projects: list[str] = [
        "ubuntu-os-cloud",
        "debian-cloud",
        "rocky-linux-cloud",
        "centos-cloud",
        "rhel-cloud",
    ]


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
    return kind if kind in BUILTIN else "plugin"


SiteConfig = Annotated[
    Annotated[AwsSite, Tag("aws")]
    | Annotated[MetalSite, Tag("metal")]
    | Annotated[OpenstackSite, Tag("openstack")]
    | Annotated[GceSite, Tag("gce")]
    | Annotated[PluginSite, Tag("plugin")],
    Discriminator(_kind),
]


class SitesFile(Strict):
    sites: dict[str, SiteConfig] = Field(min_length=1)
    # Private key files whose public halves get root on every node.
    platform_keys: list[Path] = []


def home() -> Path:
    """interlock's own state: node keys in flight, the store, the platform key."""
    env = os.environ.get("INTERLOCK_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "interlock"


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
