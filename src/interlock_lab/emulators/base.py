"""What every emulated site offers the lab daemon."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from interlock.config import SiteConfig
from interlock_lab import labdir
from interlock_lab.claims import LabAddresses
from interlock_lab.ledger import Ledger
from interlock_lab.runtime import Runtime
from interlock_lab.sitefile import SiteSpec

if TYPE_CHECKING:
    from interlock_lab.openstack.cloud import OpenstackCloud


@dataclass
class SiteContext:
    """What a site gets from the lab: its spec, the machinery, and a private dir."""

    spec: SiteSpec
    runtime: Runtime
    ledger: Ledger
    dir: Path
    loop: asyncio.AbstractEventLoop
    lab_api: str = ""  # the lab's control API (for drivers running inside a site's services)
    addresses: LabAddresses = field(default_factory=LabAddresses)
    openstack: OpenstackCloud | None = None  # the lab's one OpenStack, for openstack sites


class EmulatedSite(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None:
        """Stop serving the API; nodes are ended by the runtime afterwards."""

    def info(self) -> dict[str, Any]:
        """Endpoint and access details for clients (no secret values, only paths)."""

    def client_config(self) -> SiteConfig:
        """This site's entry in an interlock sites file."""


def password_hash(secret_file: Path) -> str:
    """sha512-crypt hash of the site's login password (created on first use, mode 0600)."""
    password = labdir.secret(secret_file)
    done = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def stable_digits(text: str, n: int) -> str:
    """n decimal digits derived from `text` (ids that stay the same across runs)."""
    return str(int(hashlib.sha256(text.encode()).hexdigest(), 16))[:n].rjust(n, "0")
