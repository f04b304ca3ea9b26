"""Deployments on the durable workflow: a deployment's nodes brought up together, waited
for with progress, and released; used by `interlock up` and by conformance runs alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

from interlock.allocate.workflow import Allocator
from interlock.engine import Engine
from interlock.errors import ExitCode, InterlockError
from interlock.model import Traits
from interlock.state import NodeRecord, Progress


async def bring_up(
    allocator: Allocator,
    deployment: str,
    count: int,
    sites: list[str],
    traits: Traits,
    progress: Progress,
) -> list[NodeRecord]:
    """`up` on an allocator already running (several deployments at once, as conform does)."""
    from dbos import DBOS, SetWorkflowID

    e = allocator.e
    if e.store.nodes(deployment):
        raise InterlockError(
            f"deployment {deployment!r} exists; `interlock down {deployment}` first",
            ExitCode.BAD_INPUT,
        )
    for site in sites:  # a bad request fails here, before anything is created
        await e.choose(site, traits)
    names = [f"{deployment}-{i}" for i in range(1, count + 1)]
    for name in names:
        wf_id = f"alloc-{name}-{uuid.uuid4().hex[:8]}"
        e.store.put(
            NodeRecord(
                name=name, deployment=deployment, workflow_id=wf_id, traits=traits.model_dump()
            )
        )
    handles = []
    for name in names:
        record = e.store.get(name)
        assert record is not None and record.workflow_id is not None
        with SetWorkflowID(record.workflow_id):
            handles.append(
                await DBOS.start_workflow_async(allocator.allocate, name, deployment, sites, traits)
            )
    await wait(e, [h.get_result() for h in handles], deployment, progress)
    return e.store.nodes(deployment)


async def wait(
    e: Engine, waits: Sequence[Awaitable[Any]], deployment: str | None, progress: Progress
) -> None:
    done = asyncio.ensure_future(asyncio.gather(*waits))
    while not done.done():
        progress(e.store.nodes(deployment))
        await asyncio.wait([done], timeout=0.25)
    progress(e.store.nodes(deployment))
    done.result()


async def down(e: Engine, deployment: str | None) -> list[str]:
    """Release every node of `deployment` (None: all): server, floating IP, keys."""
    from interlock.ssh import keys

    nodes = e.store.nodes(deployment)
    if deployment is not None and not nodes:
        raise InterlockError(f"no deployment {deployment!r}", ExitCode.NOT_RUNNING)

    async def release(n: NodeRecord) -> str:
        if n.site:
            await e.release(n.site, n.name)
        keys.remove(e.key_path(n.name))
        e.store.forget(n.name)
        return n.name

    return list(await asyncio.gather(*(release(n) for n in nodes)))
