"""The engine: the context of one interlock home (its sites, its state, the providers and
their limits), made by whoever runs work and passed to it, never reached through a global.

Nothing here touches a cloud or a secret until asked: providers are built on first use
(and with them their SDKs), the platform key is made when a node first needs it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from interlock import config
from interlock.batch import Batcher
from interlock.errors import ExitCode, InterlockError
from interlock.model import Choice, Fixup, Frozen, Metadata, StepName, Traits
from interlock.profiles import floating_ip
from interlock.state import StateUrl, Store, open_store

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

    from interlock.firewall import Firewall
    from interlock.providers.base import Provider, ServerInfo
    from interlock.ssh.sessions import Sessions

T = TypeVar("T")
OWNER = "interlock"
STORE_WRITERS = 4  # threads writing progress (the PostgreSQL pool holds 4, and 16 more)


def site_key_ref(node: str) -> str:
    """The name a node's key is registered under at its site."""
    return f"interlock-{node}"


def ownership(deployment: str, node: str | None = None) -> dict[str, str]:
    """The tags every resource made for a node carries from its creation: by them `down`
    and rollback find what a lost record or a failed clean-up left. A deployment's own
    resources (its security group) carry no node tag."""
    tags = {"interlock:owner": OWNER, "interlock:deployment": deployment}
    return tags if node is None else {**tags, "interlock:node": node}


class Opened(Frozen):
    """The groups a node request carries beyond the site's default, and why (fix-ups);
    `admits`: the sources SSH was found (or made) admitted from, where that was decided
    from the API's view before the request (step 5 then need not look again)."""

    groups: tuple[str, ...] = ()
    fixups: tuple[Fixup, ...] = ()
    admits: tuple[str, ...] = ()


@dataclass
class SiteRuntime:
    """A site's provider, its call rate and its shared describes, on the event loop that
    runs the work (asyncio's primitives belong to one loop; a command may run several,
    one after the other). The site's concurrency is its DBOS queue's (durable.py): it
    holds across processes."""

    provider: Provider
    rate: AsyncLimiter
    states: Batcher[str, ServerInfo]
    walls: Batcher[str, Firewall]
    share: int = 1  # processes whose calls `rate` is a share of (rate / share each)


def limiter(rate: float) -> AsyncLimiter:
    """`rate` calls a second; under one a second, one call every 1/rate seconds."""
    from aiolimiter import AsyncLimiter

    return AsyncLimiter(1, 1 / rate) if rate < 1 else AsyncLimiter(rate, 1)


class Engine:
    """Config, state, providers and limits of one home; steps and services get it passed."""

    def __init__(
        self,
        sites: config.SitesFile,
        state: StateUrl,
        home: Path,
        source: Path | None = None,
        store: Store | None = None,
    ) -> None:
        self.sites = sites
        self.state = state  # where the store and DBOS's workflows live
        self.store = store or open_store(state)
        self.home = home
        self.source = source  # the sites file, for errors that name it
        self.executor: str | None = None  # the DBOS executor running its work (durable.py)
        self._providers: dict[str, Provider] = {}
        self._sites: dict[tuple[str, asyncio.AbstractEventLoop], SiteRuntime] = {}
        self.rate_share = 1
        self._metadata: dict[str, Metadata] = {}
        self._fetching: dict[tuple[str, asyncio.AbstractEventLoop], asyncio.Task[Metadata]] = {}
        self._groups: dict[tuple[str, str, asyncio.AbstractEventLoop], asyncio.Task[Opened]] = {}
        self._sessions: dict[asyncio.AbstractEventLoop, Sessions] = {}
        # Progress writes, off the event loop; a few threads, within the store's pool.
        self._writes = ThreadPoolExecutor(STORE_WRITERS, thread_name_prefix="interlock-store")

    # -- what nodes need -----------------------------------------------------------

    @cached_property
    def platform(self) -> list[Path]:
        """The platform's private keys (interlock's own is created here, on first need)."""
        from interlock.ssh import keys

        return keys.platform_keys(self.sites.platform_keys, self.home)

    @cached_property
    def platform_public(self) -> list[str]:
        from interlock.ssh import keys

        return [keys.public_of(p) for p in self.platform]

    @property
    def sessions(self) -> Sessions:
        """This event loop's SSH logins kept between a node's steps (a connection lives on
        the loop that made it)."""
        from interlock.ssh.sessions import Sessions

        return self._sessions.setdefault(asyncio.get_running_loop(), Sessions())

    def key_path(self, node: str) -> Path:
        return self.home / "keys" / node

    # -- sites ---------------------------------------------------------------------

    def check_sites(self, names: list[str]) -> None:
        unknown = [n for n in names if n not in self.sites.sites]
        if unknown:
            raise InterlockError(
                f"unknown site {unknown[0]!r}; known: {', '.join(self.sites.sites)}",
                ExitCode.BAD_INPUT,
            )

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            from interlock.providers import make_provider

            try:
                made = make_provider(name, self.sites.sites[name], self.store)
            except InterlockError as e:
                if e.code != ExitCode.BAD_INPUT:
                    raise
                where = f"{self.source}: " if self.source else ""
                raise InterlockError(f"{where}site {name!r}: {e}", e.code) from None
            self._providers[name] = made
        return self._providers[name]

    def site(self, name: str) -> SiteRuntime:
        """The site's provider and limits, on the running event loop."""
        key = (name, asyncio.get_running_loop())
        if key not in self._sites:
            provider = self.provider(name)

            async def states(ids: list[str]) -> dict[str, ServerInfo]:
                return await self.call(name, provider.describe_nodes, ids)

            async def walls(ids: list[str]) -> dict[str, Firewall]:
                return await self.call(name, provider.firewalls, ids)

            # Asked within half a second, one describe answers them all.
            self._sites[key] = SiteRuntime(
                provider, limiter(1), Batcher(states, window=0.5), Batcher(walls, window=0.5),
                share=0,  # paced below
            )  # fmt: skip
        rt = self._sites[key]
        if rt.share != self.rate_share:  # new, or workers came or went: this one's share
            rt.rate = limiter(self.sites.sites[name].limits.rate / self.rate_share)
            rt.share = self.rate_share
        return rt

    def share_rate(self, processes: int) -> None:
        """`processes` (this one among them) make calls to the same sites: each paces its
        calls at its share of the site's `limits.rate`, so together they keep to it."""
        self.rate_share = max(1, processes)

    async def describe(self, site: str, server: str) -> ServerInfo:
        """The server's state, from one describe shared by the site's pending nodes (a
        server's own error, which a shared describe cannot raise for it, raised here)."""
        info = await self.site(site).states.get(server)
        if info.error is not None:
            raise info.error
        return info

    async def call(self, site: str, fn: Callable[..., T], *args: Any) -> T:
        """A provider call off the event loop, rate-limited, transient errors retried."""
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
        )

        from interlock.providers.base import TransientError

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
        """The site's normalized metadata, fetched once per engine and shared (concurrent
        callers wait for the one fetch under way)."""
        if site in self._metadata:
            return self._metadata[site]
        key = (site, asyncio.get_running_loop())
        task = self._fetching.get(key)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self.call(site, self.provider(site).metadata))
            self._fetching[key] = task
        meta = await asyncio.shield(task)
        self._metadata[site] = meta
        return meta

    async def choose(self, site: str, traits: Traits) -> Choice:
        """Steps 2-3 for one site: its metadata, then what fits `traits` (selection's rules,
        with what the site's profile declares or interlock learned)."""
        from interlock.selection import choose

        meta = await self.metadata(site)
        profile = self.sites.sites[site].profile
        floating = floating_ip(site, profile, self.store)
        return choose(site, meta, traits, profile.public_network, floating)

    def ssh_deadline(self, site: str) -> float:
        """When a node's SSH work on `site` gives up (the site's ssh_timeout from now)."""
        return time.monotonic() + self.sites.sites[site].limits.ssh_timeout

    async def release(self, site: str, node: str) -> None:
        """Release what `node` holds on `site`: floating IP, server, site key. Repeatable:
        what is gone already is skipped (used by rollback and by `interlock down`)."""
        record = self.store.get(node)
        provider = self.provider(site)
        recorded = {record.public_ip_ref} if record and record.public_ip_ref else set()
        tagged = await self.call(site, provider.public_ips_of, node)
        for ref in sorted(recorded | set(tagged)):
            await self.call(site, provider.release_public_ip, ref)
        server = (record.server_id if record else None) or await self.call(
            site, provider.find_node, node
        )
        if server:
            await self.call(site, provider.delete_node, server)
        ref = site_key_ref(node)
        if await self.call(site, provider.key_exists, ref):
            await self.call(site, provider.delete_key, ref)

    async def groups_at_creation(self, site: str, deployment: str, choice: Choice) -> Opened:
        """Where what a new node gets by default would not admit SSH from the operator, the
        deployment's own group (made once, shared by its nodes on the site) for the request
        to carry: no node then needs it attached afterwards (one call less each)."""
        key = (site, deployment, asyncio.get_running_loop())
        task = self._groups.get(key)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self._decide_groups(site, deployment, choice))
            self._groups[key] = task
        return await asyncio.shield(task)

    async def _decide_groups(self, site: str, deployment: str, choice: Choice) -> Opened:
        from interlock import firewall

        provider = self.provider(site)
        settings = self.sites.sites[site]
        if settings.profile.security_group is not None:
            return Opened()  # the operator's group: step 5 attaches it where needed
        # Before a node has an address, this host's address towards the site's API.
        sources = firewall.operator_sources(settings.ssh_from, provider.api_host)
        wall = await self.call(site, provider.default_firewall, choice.network)
        admits = tuple(str(s) for s in sources)
        if wall.admits(firewall.SSH, sources):
            return Opened(admits=admits)
        name, tags = firewall.group_name(deployment), ownership(deployment)
        ref = await self.call(
            site, provider.make_group, name, (firewall.SSH,), sources, tags, choice.network
        )
        text = f"security group allowing SSH from {firewall.shown(sources)} created"
        return Opened(groups=(ref,), fixups=(Fixup(step="firewall", text=text),), admits=admits)

    async def admitted(
        self, site: str, server: str, ports: tuple[int, ...], sources: list[IPv4Network]
    ) -> bool:
        """Whether the node's security groups admit TCP on every port from `sources` (one
        look at the groups, shared by the site's nodes that ask at once)."""
        try:
            wall = await self.site(site).walls.get(server)
        except KeyError:  # the shared look could not show it: its own look says why
            wall = await self.call(site, self.provider(site).firewall, server)
        return all(wall.admits(p, sources) for p in ports)

    async def open_own_group(
        self,
        site: str,
        server: str,
        deployment: str,
        ports: tuple[int, ...],
        sources: list[IPv4Network],
    ) -> None:
        """The deployment's own group (its ownership tags from creation; all traffic among
        its members) admitting `ports` from `sources`, attached to the node."""
        from interlock.firewall import group_name

        provider = self.provider(site)
        name, tags = group_name(deployment), ownership(deployment)
        await self.call(site, provider.open_ports, server, name, ports, sources, tags)

    async def release_groups(self, site: str, deployment: str) -> None:
        """Delete the security groups (GCE: firewall rules) carrying `deployment`'s tag on
        `site`; called by `down` once the deployment has no node left there."""
        provider = self.provider(site)
        for key in [k for k in self._groups if k[:2] == (site, deployment)]:
            del self._groups[key]  # made again by the next node that needs it
        for ref in await self.call(site, provider.groups_of, deployment):
            await self.call(site, provider.delete_group, ref)

    async def progress(self, node: str, step: StepName, **changes: Any) -> None:
        """The node's step on record. Off the event loop: on PostgreSQL a write is several
        round trips, and a thousand nodes' steps share this loop with their SSH."""
        write = partial(self.store.update, node, step=step, worker=self.executor, **changes)
        await asyncio.get_running_loop().run_in_executor(self._writes, write)


def open_engine(sites_file: Path | None = None, home: Path | None = None) -> Engine:
    """The engine of a home (default: $INTERLOCK_HOME) on a sites file (see config)."""
    source = config.sites_path(sites_file)
    sites = config.load_sites(source)
    home = home or config.home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Engine(sites, config.state_url(home, sites), home, source)
