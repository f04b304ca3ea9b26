"""Deployments: bringing nodes up through the durable workflow, listing them, taking them down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

from dbos import DBOS, SetWorkflowID, WorkflowHandleAsync

from interlock import config
from interlock.allocate import keys, workflow
from interlock.allocate.workflow import Engine
from interlock.errors import ExitCode, InterlockError
from interlock.model import Choice, Traits
from interlock.selection import choose
from interlock.store import NodeRecord, Store

Progress = Callable[[list[NodeRecord]], None]


def open_engine(sites_file: Path | None = None) -> Engine:
    path = config.sites_path(sites_file)
    sites = config.load_sites(path)
    home = config.home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Engine(sites, Store(home / "state.db"), home)


def check_sites(e: Engine, names: list[str]) -> None:
    unknown = [n for n in names if n not in e.sites.sites]
    if unknown:
        raise InterlockError(
            f"unknown site {unknown[0]!r}; known: {', '.join(e.sites.sites)}", ExitCode.BAD_INPUT
        )


async def plan(e: Engine, names: list[str], traits: Traits) -> dict[str, Choice]:
    """Per site, what a node would get (raises NoMatch, a bad request, if nothing fits)."""
    check_sites(e, names)
    out: dict[str, Choice] = {}
    for name in names:
        meta = await e.metadata(name)
        out[name] = choose(name, meta, traits, e.sites.sites[name].profile.public_network)
    return out


async def up(
    e: Engine, deployment: str, count: int, sites: list[str], traits: Traits, progress: Progress
) -> list[NodeRecord]:
    if e.store.nodes(deployment):
        raise InterlockError(
            f"deployment {deployment!r} exists; `interlock down {deployment}` first",
            ExitCode.BAD_INPUT,
        )
    await plan(e, sites, traits)  # a bad request fails here, before anything is created
    names = [f"{deployment}-{i}" for i in range(1, count + 1)]
    handles = []
    for name in names:
        wf_id = f"alloc-{name}-{uuid.uuid4().hex[:8]}"
        e.store.put(
            NodeRecord(
                name=name, deployment=deployment, workflow_id=wf_id, traits=traits.model_dump()
            )
        )
    for name in names:
        record = e.store.get(name)
        assert record is not None and record.workflow_id is not None
        with SetWorkflowID(record.workflow_id):
            handles.append(
                await DBOS.start_workflow_async(
                    workflow.allocate, name, deployment, sites, traits.model_dump()
                )
            )
    await _wait(e, [h.get_result() for h in handles], deployment, progress)
    return e.store.nodes(deployment)


async def resume(e: Engine, progress: Progress) -> list[NodeRecord]:
    """Wait for allocations a killed `interlock up` left (DBOS resumed them at launch)."""
    pending = [
        n for n in e.store.nodes() if n.status in ("pending", "allocating") and n.workflow_id
    ]
    waits = []
    for n in pending:
        assert n.workflow_id is not None
        handle: WorkflowHandleAsync[str] = await DBOS.retrieve_workflow_async(n.workflow_id)
        waits.append(handle.get_result())
    await _wait(e, waits, None, progress)
    return [r for r in (e.store.get(n.name) for n in pending) if r is not None]


async def _wait(e: Engine, waits: list, deployment: str | None, progress: Progress) -> None:  # type: ignore[type-arg]
    done = asyncio.ensure_future(asyncio.gather(*waits))
    while not done.done():
        progress(e.store.nodes(deployment))
        await asyncio.wait([done], timeout=0.25)
    progress(e.store.nodes(deployment))
    done.result()


async def down(e: Engine, deployment: str | None) -> list[str]:
    """Release every node of `deployment` (None: all): server, floating IP, keys."""
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
