"""Observing a site: one node through the same providers and durable steps as `interlock up`,
a node of every other version of the requested distribution beside it, a look at the
node as root, its release, and a check that nothing is left.

Each run has a home of its own (keys, store, durable workflows), so what interlock
learned elsewhere (a login account, say) does not hide what a site does by itself.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from interlock.allocate import deployment as deploy
from interlock.conform.guideline import Guideline
from interlock.engine import Engine, site_key_ref
from interlock.errors import InterlockError
from interlock.model import StepName, Traits
from interlock.providers.base import ProviderError
from interlock.providers.normalize import version_matches
from interlock.selection import NoMatch
from interlock.ssh.remote import connect
from interlock.state import NodeRecord

if TYPE_CHECKING:
    from interlock.allocate.workflow import Allocator


@dataclass
class Observation:
    """What happened to one site's node, from request to release."""

    site: str
    node: NodeRecord | None = None
    refused: str | None = None  # the request failed its check before anything was made
    refused_step: StepName | None = None
    post: dict[str, Any] | None = None
    released: dict[str, Any] | None = None
    # The login account of each other version of the requested distribution (None: that
    # node did not come up), beside the requested one's.
    logins: dict[str, str | None] = field(default_factory=dict)
    seconds: float = 0.0

    def failed_step(self) -> StepName | None:
        if self.refused_step is not None:
            return self.refused_step
        if self.node is None or self.node.status == "ready":
            return None
        return self.node.failed_step or "request"

    def error(self) -> str:
        """Why the site's attempt failed, in one line ("" if it did not)."""
        if self.refused:
            return self.refused
        if self.node is None or self.node.status == "ready":
            return ""
        if self.node.attempts:
            return self.node.attempts[-1].why
        return self.node.error or ""


async def observe(allocator: Allocator, site: str, guideline: Guideline) -> Observation:
    e = allocator.e
    obs = Observation(site)
    deployment = f"conform-{site}"
    start = time.monotonic()

    traits = guideline.request.traits()
    others = asyncio.ensure_future(_other_versions(allocator, site, traits))
    try:
        nodes = await deploy.bring_up(allocator, deployment, 1, [site], traits, lambda _: None)
    except NoMatch as err:
        obs.refused, obs.refused_step = str(err), "selection"
    except ProviderError as err:
        obs.refused, obs.refused_step = str(err), "metadata"
    except InterlockError as err:
        obs.refused, obs.refused_step = str(err), "metadata"
    else:
        obs.node = nodes[0]
        if obs.node.status == "ready" and obs.node.public_ip:
            obs.post = await _post_provisioning(obs.node.public_ip, e.platform[0])
        obs.released = await _release(e, deployment, site, obs.node.name)
    obs.logins = await others
    obs.seconds = round(time.monotonic() - start, 2)
    return obs


async def _other_versions(allocator: Allocator, site: str, traits: Traits) -> dict[str, str | None]:
    """A node of every other version of the requested distribution, at once: its login
    account (for login consistency), then released."""
    e = allocator.e
    try:
        meta = await e.metadata(site)
    except ProviderError:
        return {}
    versions = sorted(
        {
            i.version
            for i in meta.images
            if i.distro == traits.distro
            and i.arch == traits.arch
            and not version_matches(traits.version, i.version)
        }
    )

    async def one(version: str) -> tuple[str, str | None]:
        deployment = f"conform-{site}-v{version.replace('.', '-')}"
        wanted = traits.model_copy(update={"os": f"{traits.distro}-{version}"})
        try:
            (node,) = await deploy.bring_up(
                allocator, deployment, 1, [site], wanted, lambda _: None
            )
        except InterlockError:
            return f"{traits.distro}-{version}", None
        await deploy.down(e, deployment)
        label = node.image_label if node.image else f"{traits.distro}-{version}"
        return label, node.login_user if node.status == "ready" else None

    return dict(await asyncio.gather(*(one(v) for v in versions)))


async def _post_provisioning(ip: str, platform_key: Path) -> dict[str, Any]:
    key = asyncssh.read_private_key(platform_key)
    async with await connect(ip, "root", key) as conn:
        done = await conn.run(
            "test -f /var/lib/cloud/instance/boot-finished && echo present || echo missing;"
            " hostname",
            check=False,
        )
    lines = str(done.stdout).split("\n")
    return {"boot_finished": lines[0].strip() == "present", "hostname": lines[1].strip()}


async def _release(e: Engine, deployment: str, site: str, name: str) -> dict[str, Any]:
    await deploy.down(e, deployment)
    provider = e.provider(site)
    server = await e.call(site, provider.find_node, name)
    key = await e.call(site, provider.key_exists, site_key_ref(name))
    groups = await e.call(site, provider.groups_of, deployment)
    addresses = await e.call(site, provider.public_ips_of, name)
    return {"server": server, "site_key": key, "floating_ips": addresses, "security_groups": groups}
