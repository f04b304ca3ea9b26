"""Deployments on the durable workflow: a deployment's nodes brought up together, waited
for with progress, and released; used by `interlock up` and by conformance runs alike."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from interlock.allocate.workflow import Allocator
from interlock.engine import Engine
from interlock.errors import ExitCode, InterlockError
from interlock.model import Traits
from interlock.queues import site_queue
from interlock.state import NodeRecord, Progress

OPEN = ("pending", "allocating")


@dataclass(frozen=True)
class Released:
    released: list[str]  # nodes whose every resource is gone (and their records)
    kept: list[str]  # nodes something of which could not be released: `down` again


async def bring_up(
    allocator: Allocator,
    deployment: str,
    count: int,
    sites: list[str],
    traits: Traits,
    progress: Progress,
    detach: bool = False,
) -> list[NodeRecord]:
    """`up` on an allocator already running (several deployments at once, as conform does).

    Each node's record names its workflow and holds its request before the workflow
    starts; starting is idempotent by workflow id, so a process killed anywhere between
    the two leaves nothing `resume` cannot finish."""
    e = allocator.e
    if e.store.nodes(deployment):
        raise InterlockError(
            f"deployment {deployment!r} exists; `interlock down {deployment}` first",
            ExitCode.BAD_INPUT,
        )
    for site in sites:  # a bad request fails here, before anything is created
        await e.choose(site, traits)
    wanted = [(f"{deployment}-{i}", traits, None) for i in range(1, count + 1)]
    await add_nodes(allocator, deployment, wanted, sites, progress, detach)
    return e.store.nodes(deployment)


async def add_nodes(
    allocator: Allocator,
    deployment: str,
    wanted: Sequence[tuple[str, Traits, str | None]],
    sites: list[str],
    progress: Progress,
    detach: bool = False,
) -> None:
    """Nodes (name, traits, group) of `deployment` through the eight steps, waited for
    (`detach`: only enqueued)."""
    records = put_new(allocator.e, deployment, wanted, sites)
    await enqueue(allocator, records)
    if not detach:
        await follow(allocator.e, [r.name for r in records], deployment, progress)


def put_new(
    e: Engine, deployment: str, wanted: Sequence[tuple[str, Traits, str | None]], sites: list[str]
) -> list[NodeRecord]:
    """Each new node's record, naming its workflow, before the workflow starts."""
    records = [
        NodeRecord(
            name=name,
            deployment=deployment,
            group=group,
            workflow_id=f"alloc-{name}-{uuid.uuid4().hex[:8]}",
            traits=traits.model_dump(),
            sites=sites,
        )
        for name, traits, group in wanted
    ]
    for record in records:
        e.store.put(record)
    return records


async def enqueue(allocator: Allocator, records: Sequence[NodeRecord]) -> None:
    """Each node's workflow on its first site's queue, from its record; a workflow id
    already there is left as it is (DBOS starts a workflow id once)."""
    from dbos import DBOS, SetWorkflowID

    for record in records:
        assert record.workflow_id is not None
        queue = await DBOS.retrieve_queue_async(site_queue(record.sites[0]))
        assert queue is not None
        traits = Traits.model_validate(record.traits)
        with SetWorkflowID(record.workflow_id):
            await queue.enqueue_async(
                allocator.allocate, record.name, record.deployment, record.sites, traits
            )


def unfinished(e: Engine) -> list[NodeRecord]:
    """Nodes whose allocation has not ended (an interrupted `up` or `resume` left them)."""
    return [n for n in e.store.nodes() if n.status in ("pending", "allocating") and n.workflow_id]


async def follow(
    e: Engine, names: Sequence[str], deployment: str | None, progress: Progress
) -> None:
    """Until each of `names` is ready or failed, whichever process runs it: progress from
    the store; a workflow that ended without saying (a bug) marks its node failed."""
    from dbos import DBOS

    waiting, checked = set(names), time.monotonic()
    while True:
        records = e.store.nodes(deployment)
        progress(records)
        open_ = {r.name: r for r in records if r.name in waiting and r.status in OPEN}
        if not open_:
            return
        if time.monotonic() - checked > 2:
            checked = time.monotonic()
            ids = {r.workflow_id: r.name for r in open_.values() if r.workflow_id}
            for wf in await DBOS.list_workflows_async(
                workflow_ids=list(ids), load_input=False, load_output=False
            ):
                if wf.status in ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
                    name = ids[wf.workflow_id]
                    why = f"its workflow ended {wf.status.lower()}: {wf.error or '?'}"
                    e.store.update(name, status="failed", error=str(why)[:300])
        # Reading many records often costs more than it tells: a second between looks.
        await asyncio.sleep(0.25 if len(waiting) <= 100 else 1.0)


async def down(e: Engine, deployment: str | None, only: set[str] | None = None) -> Released:
    """Release every node of `deployment` (None: all): server, floating IPs, keys, found by
    record and by ownership tag; then each deployment's security groups on every site its
    nodes may have tried, once none of its nodes is left. A node whose release fails (after
    the retries every API call gets) keeps its record, marked with why, for the next `down`
    to try again; so do a deployment's nodes while its groups could not go. `only`: just
    these nodes of it (a group's count lowered, a failed node tried again); its groups
    and its record stay while other nodes of it do."""
    from interlock.ssh import keys

    nodes = e.store.nodes(deployment)
    if deployment is not None and not nodes and e.store.deployment(deployment) is None:
        raise InterlockError(f"no deployment {deployment!r}", ExitCode.NOT_RUNNING)
    staying = [n for n in nodes if only is not None and n.name not in only]
    nodes = [n for n in nodes if only is None or n.name in only]

    async def release(n: NodeRecord) -> bool:
        if n.site:
            try:
                await e.release(n.site, n.name)
            except Exception as err:
                e.store.update(n.name, status="deleting", error=f"release incomplete: {err}")
                return False
        keys.remove(e.key_path(n.name))
        return True

    outcomes = await asyncio.gather(*map(release, nodes))
    freed = dict(zip([n.name for n in nodes], outcomes, strict=True))
    kept = {n.name for n in nodes if not freed[n.name]}
    for name, members in _by_deployment(nodes).items():
        if any(n.name in kept for n in members) or staying:
            continue  # a node of it is still there: its groups stay with it
        sites = sorted({s for n in members for s in (n.sites or [n.site]) if s})
        try:
            for site in sites:
                await e.release_groups(site, name)
        except Exception as err:
            for n in members:
                why = f"release incomplete: security group: {err}"
                e.store.update(n.name, status="deleting", error=why)
                kept.add(n.name)
    for n in nodes:
        if n.name not in kept:
            e.store.forget(n.name)
    gone = {n.deployment for n in nodes} | ({deployment} if deployment else set())
    for name in gone:
        if not e.store.nodes(name):
            e.store.forget_deployment(name)  # and its node-roles
    released = [n.name for n in nodes if n.name not in kept]
    return Released(released=released, kept=[n.name for n in nodes if n.name in kept])


def _by_deployment(nodes: list[NodeRecord]) -> dict[str, list[NodeRecord]]:
    out: dict[str, list[NodeRecord]] = {}
    for n in nodes:
        out.setdefault(n.deployment, []).append(n)
    return out
