"""Each node's allocation: a durable DBOS workflow whose checkpointed steps are the eight steps.

The steps are methods of an `Allocator`, a DBOS configured instance bound to one engine:
DBOS records the instance's name with each workflow (in the home's own system database),
so a workflow resumed by a later process runs on that process's engine for the home. Killed at
any point, a workflow resumes on the next launch: finished steps are not run again
(their typed results come from DBOS's system database), an unfinished one runs again
and is written to be safe to repeat (a request first looks for the server its node's
ownership tag names). A failed attempt rolls back what it created on that site; a
quota/capacity error moves the node to the next site.
"""

from __future__ import annotations

import asyncio
import time

import asyncssh
from dbos import DBOS, DBOSConfiguredInstance

from interlock import firewall
from interlock.allocate.results import Addressed, LoggedIn, Registered, Requested
from interlock.engine import Engine, Opened, ownership, site_key_ref
from interlock.model import STEP_LABELS, Choice, Fixup, StepName, Traits
from interlock.profiles import login_candidates
from interlock.providers.base import NodeRequest, ProviderError, QuotaError, ServerInfo
from interlock.queues import site_queue
from interlock.ssh import access, keys
from interlock.ssh.remote import AccessError
from interlock.state import Attempt, NodeStatus

POLL = 2.0  # seconds between looks at a node not running yet (one describe for them all)


@DBOS.dbos_class()
class Allocator(DBOSConfiguredInstance):
    """The eight steps and the workflow that runs them, on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        # One name whatever the home's path (a home may move): DBOS holds one Allocator
        # per process at a time, the one of the engine whose workflows run (see running).
        super().__init__("interlock")

    # -- the steps ---------------------------------------------------------------

    @DBOS.step()
    async def node_key(self, site: str, node: str, deployment: str) -> Registered:
        """Step 1: the node-specific ed25519 key (the private half stays a 0600 file),
        registered with the site (key_ref None: nothing registered; the key goes with the
        request, or in over SSH with the site's bootstrap key)."""
        e = self.e
        resumed = _begun(e, node, "node_key")
        await e.progress(node, "node_key")
        path = e.key_path(node)
        if path.exists():
            public = keys.public_of(path) + f" interlock:{node}"
        else:
            public = keys.new_key(path, f"interlock:{node}")
        provider = e.provider(site)
        ref = site_key_ref(node)
        # Only a step run before may have registered it already (register_key also takes
        # a name taken over); a first run spends no call on looking.
        if resumed and await e.call(site, provider.key_exists, ref):
            return Registered(public=public, key_ref=ref)
        got = await e.call(site, provider.register_key, ref, public, ownership(deployment, node))
        await e.progress(node, "node_key", key_ref=got)
        return Registered(public=public, key_ref=got)

    @DBOS.step()
    async def select(self, site: str, node: str, traits: Traits) -> Choice:
        """Steps 2-3: the site's metadata, normalized; flavor, image, network from traits."""
        await self.e.progress(node, "metadata")
        await self.e.metadata(site)
        await self.e.progress(node, "selection")
        return await self.e.choose(site, traits)

    @DBOS.step()
    async def request(
        self, site: str, node: str, deployment: str, choice: Choice, key: Registered
    ) -> Requested:
        """Step 4: request the node, with ownership tags; safe to repeat (a step run before
        first looks for the server its node's tag names; EC2 also gets an idempotency token)."""
        e = self.e
        resumed = _begun(e, node, "request")
        await e.progress(node, "request")
        provider = e.provider(site)
        existing = await e.call(site, provider.find_node, node) if resumed else None
        opened = Opened()
        if existing is not None:
            info = ServerInfo(existing, "pending", None, None)
        else:
            opened = await e.groups_at_creation(site, deployment, choice)
            tags = ownership(deployment, node)
            request = NodeRequest(
                node,
                choice.image,
                choice.flavor,
                choice.network,
                key.key_ref,
                tags,
                key.public,
                token=f"{node}-{site}-{DBOS.workflow_id}"[-64:],
                groups=opened.groups,
            )
            info = await e.call(site, provider.create_node, request)
        await e.progress(
            node,
            "request",
            server_id=info.server_id,
            image=choice.image.id,
            flavor=choice.flavor.id,
            image_name=choice.image.name,
            flavor_name=choice.flavor.name,
            image_os=(choice.image.distro, choice.image.version),
        )
        return Requested(server=info, fixups=opened.fixups, admits=opened.admits)

    @DBOS.step()
    async def public_address(
        self, site: str, node: str, deployment: str, created: ServerInfo, choice: Choice
    ) -> Addressed:
        """Step 5: the direct public address, or a floating IP where selection said one is
        needed (or none came). The request's answer may tell it already; otherwise the
        node's state comes from the describes all pending nodes of the site share."""
        e = self.e
        await e.progress(node, "public_address")
        provider = e.provider(site)
        deadline = e.ssh_deadline(site)
        fixups: list[Fixup] = []
        record = e.store.get(node)
        ip, ref = (record.public_ip, record.public_ip_ref) if record else (None, None)
        server, info = created.server_id, created
        while ip is None:
            if info.state == "running" and info.public_ip and not choice.needs_floating_ip:
                ip = info.public_ip
            elif info.state == "running":
                if not choice.needs_floating_ip:  # a public network gave no address
                    e.store.learn(
                        site, "floating_ip", "yes", f"{server} had no public address when running"
                    )
                tags = ownership(deployment, node)
                ip, ref = await e.call(site, provider.attach_public_ip, server, tags)
                await e.progress(node, "public_address", public_ip=ip, public_ip_ref=ref)
                # A try that died half-way (a call retried after it allocated, a killed run
                # of this step) may have left an address of this node's: only the one it
                # has now stays. One look a floating node: cheaper than a leak.
                for left in await e.call(site, provider.public_ips_of, node):
                    if left != ref:
                        await e.call(site, provider.release_public_ip, left)
                fixups.append(Fixup(step="public_address", text="floating IP allocated"))
            elif info.state == "gone" or time.monotonic() > deadline:
                raise AccessError(f"{server} never reached running (state {info.state})")
            else:
                await asyncio.sleep(POLL)
                info = await e.describe(site, server)
                continue
            await e.progress(node, "public_address", public_ip=ip, public_ip_ref=ref)
        return Addressed(ip=ip, ref=ref, fixups=tuple(fixups))

    @DBOS.step()
    async def reachable(
        self, site: str, node: str, deployment: str, server: str, ip: str, admits: tuple[str, ...]
    ) -> tuple[Fixup, ...]:
        """Step 5, then (its `firewall` half): where the node's groups block SSH from the
        operator, a group that admits it (the profile's, or the deployment's own, made with
        its ownership tags); then SSH answers at `ip`. Where the request's groups were
        chosen to admit these very sources, there is nothing to look at again."""
        e = self.e
        await e.progress(node, "firewall")
        provider = e.provider(site)
        settings = e.sites.sites[site]
        sources = firewall.operator_sources(settings.ssh_from, ip)
        fixups: list[Fixup] = []
        decided = admits and admits == tuple(str(s) for s in sources)
        if not decided and not await e.admitted(site, server, (firewall.SSH,), sources):
            named = settings.profile.security_group
            if named is not None:
                group = await e.call(site, provider.attach_group, server, named)
                wall = await e.call(site, provider.firewall, server)
                if not wall.admits(firewall.SSH, sources):  # the operator's group: checked
                    why = f"does not admit SSH from {firewall.shown(sources)}"
                    raise AccessError(f"security group {named} (the profile's) {why}")
                text = f"security group {group} (the profile's) attached"
            else:
                await e.open_own_group(site, server, deployment, (firewall.SSH,), sources)
                text = f"security group allowing SSH from {firewall.shown(sources)} created"
            fixups.append(Fixup(step="firewall", text=text))
        await e.progress(node, "public_address")  # and then step 5's end: SSH answers
        await access.wait_for_ssh(ip, e.ssh_deadline(site))
        return tuple(fixups)

    @DBOS.step()
    async def login(
        self, site: str, node: str, ip: str, choice: Choice, key: Registered
    ) -> LoggedIn:
        """Step 6: log in with the node key, discovering the account."""
        e = self.e
        await e.progress(node, "login")
        provider = e.provider(site)
        deadline = e.ssh_deadline(site)
        fixups: list[Fixup] = []
        if key.key_ref is None and provider.bootstrap is not None:
            path, user = provider.bootstrap
            await access.install_key_with(ip, path, user, key.public, deadline)
            text = f"installed over SSH with the site's bootstrap key ({user})"
            fixups.append(Fixup(step="node_key", text=text))
        private = asyncssh.read_private_key(e.key_path(node))
        image = choice.image
        candidates = login_candidates(site, e.sites.sites[site].profile, e.store, image)
        found = await access.discover_login(ip, private, candidates, deadline, e.sessions)
        e.store.learn(
            site,
            f"login_user:{image.id}",
            found.user,
            f"logged in on {node}: {', '.join(found.tried)}",
        )
        await e.progress(node, "login", login_user=found.user)
        fixups += [Fixup(step="login", text=f) for f in found.fixups]
        return LoggedIn(user=found.user, fixups=tuple(fixups))

    @DBOS.step()
    async def root_before(self, node: str, ip: str, user: str) -> access.RootState:
        """Step 7, first: how the node came (root by key? password login on?), kept so a
        resumed step 7 reports what the node lacked, not what a first try already did."""
        await self.e.progress(node, "root_access")
        key = asyncssh.read_private_key(self.e.key_path(node))
        return await access.root_state(ip, user, key, self.e.sessions)

    @DBOS.step()
    async def secure(
        self, node: str, ip: str, user: str, before: access.RootState
    ) -> tuple[Fixup, ...]:
        """Step 7: root with the platform keys, password login off, verified for real.
        Returns what the node did not have already (its fix-ups)."""
        e = self.e
        await e.progress(node, "root_access")
        key = asyncssh.read_private_key(e.key_path(node))
        await access.secure_root(ip, user, key, e.platform_public, e.sessions)
        host_key = await access.verify_root(ip, e.platform[0], time.monotonic() + 60, e.sessions)
        await e.progress(node, "root_access", host_key=host_key)
        fixups = []
        if not before.root_by_key:
            text = "root login with the platform keys enabled"
            fixups.append(Fixup(step="root_access", text=text))
        if before.password_login:
            fixups.append(Fixup(step="root_access", text="password login turned off"))
        return tuple(fixups)

    @DBOS.step()
    async def drop_node_key(
        self, site: str, node: str, ip: str, key: Registered
    ) -> tuple[Fixup, ...]:
        """Step 8: the node key leaves the node, the site and the disk."""
        e = self.e
        await e.progress(node, "key_removal")
        await access.remove_node_key(ip, e.platform[0], key.public, e.sessions)
        provider = e.provider(site)
        if key.key_ref is not None:
            await e.call(site, provider.delete_key, key.key_ref)
        keys.remove(e.key_path(node))
        await e.progress(node, "key_removal", key_ref=None)
        if key.key_ref is None and provider.bootstrap is not None:
            text = "the site has no key API: removed from the node only"
            return (Fixup(step="key_removal", text=text),)
        return ()

    @DBOS.step()
    async def rollback(self, site: str, node: str, deployment: str) -> None:
        """Release what this attempt created on `site`: server, floating IP, site key; and
        the deployment's security group there, if no other node of it is on the site (one
        that comes later makes it again)."""
        e = self.e
        await e.release(site, node)
        e.store.update(
            node,
            server_id=None,
            public_ip=None,
            public_ip_ref=None,
            key_ref=None,
            login_user=None,
        )
        # Any other node of it that may still use the group here (even one waiting in the
        # queue, whose request may carry it already).
        others = [
            n
            for n in e.store.nodes(deployment)
            if n.name != node and n.status != "failed" and site in (n.site, *n.sites)
        ]
        if not others:
            await e.release_groups(site, deployment)

    @DBOS.step()
    async def begin(self, node: str, site: str) -> float:
        """An attempt on `site` starts (returns when). A step, not workflow code: a workflow
        recovered after its last step replays its code, and must not mark a finished node
        allocating."""
        self.e.store.update(
            node,
            site=site,
            status="allocating",
            fixups=[],
            error=None,
            failed_step=None,
            worker=self.e.executor,
        )
        return time.time()

    @DBOS.step()
    async def finish(
        self,
        node: str,
        status: NodeStatus,
        attempts: list[Attempt],
        fixups: tuple[Fixup, ...] = (),
    ) -> None:
        if status != "ready":
            keys.remove(self.e.key_path(node))
        error = _error(attempts) if status == "failed" else None
        self.e.store.update(
            node, status=status, attempts=attempts, fixups=list(fixups), error=error
        )

    @DBOS.step()
    async def hand_on(self, node: str, workflow_id: str) -> None:
        """The node's allocation goes on in the workflow `workflow_id` (the next site's)."""
        self.e.store.update(node, workflow_id=workflow_id, status="pending")

    # -- the workflow --------------------------------------------------------------

    @DBOS.workflow()
    async def allocate(
        self,
        node: str,
        deployment: str,
        sites: list[str],
        traits: Traits,
        tried: list[Attempt] | None = None,
    ) -> NodeStatus:
        """One node through the eight steps on the first site of `sites` not `tried` yet,
        taken from that site's queue (its slot held for the whole attempt). A quota or
        capacity failure hands the node on to the next site's queue, as a new workflow."""
        e = self.e
        attempts = list(tried or [])
        site = sites[len(attempts)]
        started = await self.begin(node, site)
        worker = e.executor
        try:
            fixups = await self._on_site(site, node, deployment, traits)
        except Exception as err:  # every failure rolls back this site's attempt
            record = e.store.get(node)
            step: StepName = (record.step if record else None) or "node_key"
            why = f"{STEP_LABELS[step]}: {_one_line(err)}"
            e.store.update(node, failed_step=step)
            try:
                await self.rollback(site, node, deployment)
            except Exception as left:  # what stays is on record: `down` retries
                why += f" (rollback incomplete: {_one_line(left)})"
                attempts.append(Attempt(site=site, result="failed", why=why, started=started,
                                        ended=time.time(), worker=worker))  # fmt: skip
                await self.finish(node, "failed", attempts)
                return "failed"
            attempts.append(Attempt(site=site, result="failed", why=why, started=started,
                                    ended=time.time(), worker=worker))  # fmt: skip
            if isinstance(err, QuotaError) and len(attempts) < len(sites):
                # Capacity or quota: the next site may have room, under its own limits.
                queue = await DBOS.retrieve_queue_async(site_queue(sites[len(attempts)]))
                assert queue is not None
                handle = await queue.enqueue_async(
                    self.allocate, node, deployment, sites, traits, attempts
                )
                await self.hand_on(node, handle.workflow_id)
                return "pending"
            await self.finish(node, "failed", attempts)
            return "failed"
        attempts.append(Attempt(site=site, result="ready", started=started, ended=time.time(),
                                worker=worker))  # fmt: skip
        await self.finish(node, "ready", attempts, fixups)
        return "ready"

    async def _on_site(
        self, site: str, node: str, deployment: str, traits: Traits
    ) -> tuple[Fixup, ...]:
        key = await self.node_key(site, node, deployment)
        choice = await self.select(site, node, traits)
        requested = await self.request(site, node, deployment, choice, key)
        created = requested.server
        address = await self.public_address(site, node, deployment, created, choice)
        opened = await self.reachable(
            site, node, deployment, created.server_id, address.ip, requested.admits
        )
        try:  # steps 6-8 hand their SSH logins on (ssh.sessions); they end here
            found = await self.login(site, node, address.ip, choice, key)
            before = await self.root_before(node, address.ip, found.user)
            secured = await self.secure(node, address.ip, found.user, before)
            dropped = await self.drop_node_key(site, node, address.ip, key)
        finally:
            await self.e.sessions.close(address.ip)
        every = (*choice.fixups, *requested.fixups, *address.fixups, *opened, *found.fixups,
                 *secured, *dropped)  # fmt: skip
        return tuple(dict.fromkeys(every))


def _begun(e: Engine, node: str, step: StepName) -> bool:
    """Whether a run of `step` began for `node` before this one (killed, or retried)."""
    record = e.store.get(node)
    return record is not None and step in record.timeline


def _error(attempts: list[Attempt]) -> str:
    """A failed node's one line: the site and its reason, or each site's in turn."""
    tried = [f"{a.site}: {a.why}" for a in attempts]
    if len(tried) == 1:
        return tried[0]
    return "no site could take it: " + ("; ".join(tried) or "no site given")


def _one_line(err: BaseException) -> str:
    # A provider's error names its site, which each attempt records beside it already.
    text = (err.detail if isinstance(err, ProviderError) else str(err)).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
