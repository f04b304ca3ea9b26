"""Deployments as a service: planning, bringing nodes up through the durable workflow,
resuming what an interrupted run left, listing them, taking them down."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interlock.engine import Engine

if TYPE_CHECKING:
    from interlock.allocate.deployment import Released
from interlock.errors import ExitCode, InterlockError
from interlock.model import Choice, Traits
from interlock.state import NodeRecord, Progress


async def plan(e: Engine, names: list[str], traits: Traits) -> dict[str, Choice]:
    """Per site, what a node would get (raises NoMatch, a bad request, if nothing fits)."""
    e.check_sites(names)
    return {name: await e.choose(name, traits) for name in names}


async def up(
    e: Engine,
    deployment: str,
    count: int,
    sites: list[str],
    traits: Traits,
    progress: Progress,
    detach: bool = False,
) -> list[NodeRecord]:
    """`count` nodes named DEPLOYMENT-1…N, each through the eight steps over `sites`: run
    here, or by the workers that are up (`detach`: enqueued, not waited for)."""
    from interlock.allocate.deployment import bring_up
    from interlock.durable import running

    e.check_sites(sites)
    with running(e, "client" if detach else None) as durable:
        allocator = durable.allocator
        return await bring_up(allocator, deployment, count, sites, traits, progress, detach)


async def resume(e: Engine, progress: Progress) -> list[NodeRecord]:
    """Finish the allocations an interrupted `up` (or `resume`) left, wherever it died:
    each node's workflow goes on from its last finished step (a dead process's are taken
    over), or starts if it never did."""
    from interlock.allocate.deployment import enqueue, follow, unfinished
    from interlock.durable import running

    pending = unfinished(e)
    with running(e) as durable:
        await enqueue(durable.allocator, pending)
        await follow(e, [n.name for n in pending], None, progress)
    return [r for r in (e.store.get(n.name) for n in pending) if r is not None]


def nodes(e: Engine, deployment: str | None = None) -> list[NodeRecord]:
    return e.store.nodes(deployment)


def ready_node(e: Engine, name: str) -> NodeRecord:
    """A node that is ready to log in to, or a clear error."""
    node = e.store.get(name)
    if node is None or node.status != "ready" or not node.public_ip or not node.host_key:
        raise InterlockError(f"no ready node {name!r} (see `interlock ls`)", ExitCode.NOT_RUNNING)
    return node


async def down(e: Engine, deployment: str | None) -> Released:
    """Release every node of `deployment` (None: all): server, floating IPs, keys; what
    could not be released stays on record (`kept`) for the next `down`."""
    from interlock.allocate.deployment import down as release

    return await release(e, deployment)
