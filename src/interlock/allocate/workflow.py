"""Each node's allocation: a durable DBOS workflow whose checkpointed steps are the eight steps.

Killed at any point, a workflow resumes on the next launch: finished steps are
not run again (their results come from DBOS's system database), an unfinished
one runs again and is written to be safe to repeat (a request first looks for
the server its node's ownership tag names). A failed attempt rolls back what
it created on that site; a quota/capacity error moves the node to the next site.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
from aiolimiter import AsyncLimiter
from dbos import DBOS
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from interlock.allocate import access, keys
from interlock.config import SitesFile
from interlock.model import Choice, Metadata, Traits
from interlock.profiles import login_candidates, needs_floating_ip
from interlock.providers import make_provider
from interlock.providers.base import (
    NodeRequest,
    Provider,
    ProviderError,
    QuotaError,
    TransientError,
)
from interlock.selection import NoMatch, choose, selection_fixups
from interlock.store import Store

T = TypeVar("T")
OWNER = "interlock"


def site_key_ref(node: str) -> str:
    """The name a node's key is registered under at its site."""
    return f"interlock-{node}"


@dataclass
class SiteRuntime:
    provider: Provider
    slots: asyncio.Semaphore
    rate: AsyncLimiter


class Engine:
    """What the durable steps need besides their arguments: config, store, providers."""

    def __init__(self, sites: SitesFile, store: Store, home: Path) -> None:
        self.sites = sites
        self.store = store
        self.home = home
        self.platform = keys.platform_keys(sites.platform_keys, home)
        self.platform_public = [keys.public_of(p) for p in self.platform]
        self._sites: dict[str, SiteRuntime] = {}
        self._metadata: dict[str, asyncio.Task[Metadata]] = {}

    def site(self, name: str) -> SiteRuntime:
        if name not in self._sites:
            cfg = self.sites.sites[name]
            self._sites[name] = SiteRuntime(
                make_provider(name, cfg, self.store),
                asyncio.Semaphore(cfg.limits.concurrency),
                AsyncLimiter(cfg.limits.rate, 1),
            )
        return self._sites[name]

    async def call(self, site: str, fn: Callable[..., T], *args: Any) -> T:
        """A provider call off the event loop, rate-limited, transient errors retried."""
        rt = self.site(site)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_attempt(6),
            reraise=True,
        ):
            with attempt:
                async with rt.rate:
                    return await asyncio.to_thread(fn, *args)
        raise AssertionError("unreachable")

    async def metadata(self, site: str) -> Metadata:
        """The site's normalized metadata, fetched once per process and shared."""
        task = self._metadata.get(site)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self.call(site, self.site(site).provider.metadata))
            self._metadata[site] = task
        return await asyncio.shield(task)

    def ssh_deadline(self, site: str) -> float:
        """When a node's SSH work on `site` gives up (the site's ssh_timeout from now)."""
        return time.monotonic() + self.sites.sites[site].limits.ssh_timeout

    async def release(self, site: str, node: str) -> None:
        """Release what `node` holds on `site`: floating IP, server, site key. Repeatable:
        what is gone already is skipped (used by rollback and by `interlock down`)."""
        record = self.store.get(node)
        provider = self.site(site).provider
        if record and record.public_ip_ref:
            await self.call(site, provider.release_public_ip, record.public_ip_ref)
        server = (record.server_id if record else None) or await self.call(
            site, provider.find_node, node
        )
        if server:
            await self.call(site, provider.delete_node, server)
        ref = site_key_ref(node)
        if await self.call(site, provider.key_exists, ref):
            await self.call(site, provider.delete_key, ref)

    def key_path(self, node: str) -> Path:
        return self.home / "keys" / node

    def progress(self, node: str, step: str, **changes: Any) -> None:
        self.store.update(node, step=step, **changes)


_engine: Engine | None = None


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("the allocation engine is not started")
    return _engine


def start(e: Engine) -> None:
    """Set the engine and launch DBOS (which resumes unfinished allocations)."""
    global _engine
    _engine = e
    DBOS(
        config={
            "name": "interlock",
            "system_database_url": f"sqlite:///{e.home / 'workflows.sqlite'}",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()


def stop() -> None:
    DBOS.destroy(destroy_registry=False)


# -- the steps ---------------------------------------------------------------


@DBOS.step()
async def node_key(node: str) -> str:
    """Step 1a: the node-specific ed25519 key (the private half stays a 0600 file)."""
    e = engine()
    e.progress(node, "node key")
    path = e.key_path(node)
    if path.exists():
        return keys.public_of(path) + f" interlock:{node}"
    return keys.new_key(path, f"interlock:{node}")


@DBOS.step()
async def register_key(site: str, node: str, public: str) -> str | None:
    """Step 1b: register the node key with the site (None: the site has no key API)."""
    e = engine()
    provider = e.site(site).provider
    ref = site_key_ref(node)
    if await e.call(site, provider.key_exists, ref):
        return ref
    got = await e.call(site, provider.register_key, ref, public)
    e.progress(node, "node key", key_ref=got)
    return got


@DBOS.step()
async def select(site: str, node: str, traits: dict[str, Any]) -> dict[str, Any]:
    """Steps 2-3: the site's metadata, normalized; flavor, image, network from traits."""
    e = engine()
    e.progress(node, "select")
    meta = await e.metadata(site)
    declared = e.sites.sites[site].profile.public_network
    choice = choose(site, meta, Traits(**traits), declared)
    return {"choice": choice.model_dump(), "fixups": selection_fixups(meta, choice)}


@DBOS.step()
async def request(
    site: str,
    node: str,
    deployment: str,
    choice: dict[str, Any],
    key_ref: str | None,
    public: str,
) -> str:
    """Step 4: request the node, with ownership tags; safe to repeat."""
    e = engine()
    e.progress(node, "request")
    c = Choice.model_validate(choice)
    provider = e.site(site).provider
    existing = await e.call(site, provider.find_node, node)
    if existing is not None:
        server = existing
    else:
        tags = {
            "interlock:owner": OWNER,
            "interlock:deployment": deployment,
            "interlock:node": node,
        }
        server = await e.call(
            site,
            provider.create_node,
            NodeRequest(node, c.image, c.flavor, c.network, key_ref, tags, public),
        )
    e.progress(
        node,
        "request",
        server_id=server,
        image=c.image.id,
        flavor=c.flavor.id,
        image_name=c.image.name,
        flavor_name=c.flavor.name,
    )
    return server


@DBOS.step()
async def public_address(site: str, node: str, server: str, floating: bool) -> dict[str, Any]:
    """Step 5: the direct public address, or a floating IP; verified on port 22."""
    e = engine()
    e.progress(node, "public address")
    provider = e.site(site).provider
    deadline = e.ssh_deadline(site)
    fixups: list[str] = []
    record = e.store.get(node)
    ip, ref = (record.public_ip, record.public_ip_ref) if record else (None, None)
    while ip is None:
        info = await e.call(site, provider.describe_node, server)
        if info.state == "running" and info.public_ip:
            ip = info.public_ip
        elif info.state == "running" and (floating or not info.public_ip):
            ip, ref = await e.call(site, provider.attach_public_ip, server)
            fixups.append("public_address: floating IP allocated")
            e.store.learn(
                site, "floating_ip", "yes", f"{server} had no public address when running"
            )
        elif info.state == "gone" or time.monotonic() > deadline:
            raise access.AccessError(f"{server} never reached running (state {info.state})")
        else:
            await asyncio.sleep(0.2)
        e.progress(node, "public address", public_ip=ip, public_ip_ref=ref)
    await access.wait_for_ssh(ip, deadline)
    return {"ip": ip, "ref": ref, "fixups": fixups}


@DBOS.step()
async def login(
    site: str, node: str, ip: str, image: dict[str, Any], key_ref: str | None, public: str
) -> dict[str, Any]:
    """Step 6: log in with the node key, discovering the account."""
    e = engine()
    e.progress(node, "login")
    provider = e.site(site).provider
    deadline = e.ssh_deadline(site)
    fixups: list[str] = []
    from interlock.model import Image

    img = Image.model_validate(image)
    if key_ref is None and provider.bootstrap is not None:
        path, user = provider.bootstrap
        await access.install_key_with(ip, path, user, public, deadline)
        fixups.append(f"node_key: installed over SSH with the site's bootstrap key ({user})")
    key = asyncssh.read_private_key(e.key_path(node))
    candidates = login_candidates(site, e.sites.sites[site].profile, e.store, img)
    found = await access.discover_login(ip, key, candidates, deadline)
    e.store.learn(
        site, f"login_user:{img.id}", found.user, f"logged in on {node}: {', '.join(found.tried)}"
    )
    e.progress(node, "login", login_user=found.user)
    return {"user": found.user, "fixups": fixups + [f"login: {f}" for f in found.fixups]}


@DBOS.step()
async def secure(node: str, ip: str, user: str) -> list[str]:
    """Step 7: root with the platform keys, password login off, verified for real.
    Returns what the node did not have already (its fix-ups)."""
    e = engine()
    e.progress(node, "root access")
    key = asyncssh.read_private_key(e.key_path(node))
    before = await access.root_state(ip, user, key)
    await access.secure_root(ip, user, key, e.platform_public)
    host_key = await access.verify_root(ip, e.platform[0], time.monotonic() + 60)
    e.progress(node, "root access", host_key=host_key)
    fixups = []
    if not before.root_by_key:
        fixups.append("root_access: root login with the platform keys enabled")
    if before.password_login:
        fixups.append("root_access: password login turned off")
    return fixups


@DBOS.step()
async def drop_node_key(
    site: str, node: str, ip: str, key_ref: str | None, public: str
) -> list[str]:
    """Step 8: the node key leaves the node, the site and the disk."""
    e = engine()
    e.progress(node, "remove node key")
    await access.remove_node_key(ip, e.platform[0], public)
    provider = e.site(site).provider
    if key_ref is not None:
        await e.call(site, provider.delete_key, key_ref)
        if await e.call(site, provider.key_exists, key_ref):
            raise access.AccessError(f"the site still lists key {key_ref}")
    keys.remove(e.key_path(node))
    e.progress(node, "remove node key", key_ref=None)
    if key_ref is None:
        return ["key_removal: the site has no key API: removed from the node only"]
    return []


@DBOS.step()
async def rollback(site: str, node: str) -> None:
    """Release what this attempt created on `site`: server, floating IP, site key."""
    e = engine()
    await e.release(site, node)
    e.progress(
        node,
        "rolled back",
        server_id=None,
        public_ip=None,
        public_ip_ref=None,
        key_ref=None,
        login_user=None,
    )


@DBOS.step()
async def finish(node: str, status: str, fields: dict[str, Any]) -> None:
    e = engine()
    if status != "ready":
        keys.remove(e.key_path(node))
    e.store.update(node, status=status, **fields)


# -- the workflow --------------------------------------------------------------


@DBOS.workflow()
async def allocate(node: str, deployment: str, sites: list[str], traits: dict[str, Any]) -> str:
    """One node through the eight steps, over `sites` in order of preference."""
    e = engine()
    attempts: list[dict[str, str]] = []
    for site in sites:
        e.progress(
            node, "start", site=site, status="allocating", fixups=[], error=None, failed_step=None
        )
        async with e.site(site).slots:
            try:
                fixups = await _on_site(site, node, deployment, traits)
            except Exception as err:  # every failure rolls back this site's attempt
                record = e.store.get(node)
                where = record.step if record else "start"
                why = f"{where}: {_one_line(err)}"
                e.store.update(node, failed_step=_step_of(where, err))
                try:
                    await rollback(site, node)
                except Exception as left:  # what stays is on record: `interlock down` retries
                    why += f" (rollback incomplete: {_one_line(left)})"
                    attempts.append({"site": site, "result": "failed", "why": why})
                    await finish(node, "failed", {"error": _error(attempts), "attempts": attempts})
                    return "failed"
                attempts.append({"site": site, "result": "failed", "why": why})
                if isinstance(err, QuotaError):
                    continue  # capacity or quota: the next site may have room
                await finish(node, "failed", {"error": _error(attempts), "attempts": attempts})
                return "failed"
        attempts.append({"site": site, "result": "ready", "why": ""})
        await finish(node, "ready", {"fixups": fixups, "attempts": attempts, "step": "done"})
        return "ready"
    await finish(node, "failed", {"error": _error(attempts), "attempts": attempts})
    return "failed"


def _error(attempts: list[dict[str, str]]) -> str:
    """A failed node's one line: the site and its reason, or each site's in turn."""
    tried = [f"{a['site']}: {a['why']}" for a in attempts]
    if len(tried) == 1:
        return tried[0]
    return "no site could take it: " + ("; ".join(tried) or "no site given")


async def _on_site(site: str, node: str, deployment: str, traits: dict[str, Any]) -> list[str]:
    e = engine()
    public = await node_key(node)
    key_ref = await register_key(site, node, public)
    selected = await select(site, node, traits)
    choice = selected["choice"]
    fixups: list[str] = list(selected["fixups"])
    server = await request(site, node, deployment, choice, key_ref, public)
    floating = needs_floating_ip(site, e.sites.sites[site].profile, e.store) or False
    address = await public_address(site, node, server, floating)
    fixups += address["fixups"]
    found = await login(site, node, address["ip"], choice["image"], key_ref, public)
    fixups += found["fixups"]
    fixups += await secure(node, address["ip"], found["user"])
    fixups += await drop_node_key(site, node, address["ip"], key_ref, public)
    return list(dict.fromkeys(fixups))


# Which of the eight steps each progress stage is (select covers steps 2 and 3).
STAGES = {
    "start": "node_key",
    "node key": "node_key",
    "request": "request",
    "public address": "public_address",
    "login": "login",
    "root access": "root_access",
    "remove node key": "key_removal",
}


def _step_of(stage: str, err: BaseException) -> str:
    if stage == "select":
        return "selection" if isinstance(err, NoMatch) else "metadata"
    return STAGES.get(stage, "request")


def _one_line(err: BaseException) -> str:
    # A provider's error names its site, which each attempt records beside it already.
    text = (err.detail if isinstance(err, ProviderError) else str(err)).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
