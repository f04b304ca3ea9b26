"""`apply --detach`: a deployment applied by the workers, as one durable workflow.

The same phases as an `apply` that follows (services.apply), with every read and write
of the store in a step and every start of other work (allocations, node-role runs) in
the workflow itself, from what those steps returned: so a workflow recovered on another
worker replays to where its last worker died and goes on from there. Waiting is DBOS's
durable sleep between looks at the store; a node-role run that ends without recording
its outcome is put on record as an error by the next look, as `converge` does.
"""

from __future__ import annotations

import uuid
from contextlib import suppress
from dataclasses import dataclass

from dbos import (
    DBOS,
    DBOSConfiguredInstance,
    SetWorkflowID,
    WorkflowHandleAsync,
    WorkflowStatusString,
)

from interlock.allocate.deployment import OPEN
from interlock.allocate.deployment import enqueue as enqueue_nodes
from interlock.allocate.workflow import Allocator
from interlock.compose.converge import Converger, failed, next_round
from interlock.compose.converge import enqueue as enqueue_role
from interlock.compose.graph import bind
from interlock.engine import Engine
from interlock.errors import ExitCode, InterlockError
from interlock.queues import DEPLOYMENTS
from interlock.services.phases import NodesPlanned, on_record, plan_nodes, prepare
from interlock.state import NodeRoleRecord

LOOK_EVERY = 1.0  # seconds of durable sleep between looks at the store
UNDER_WAY = {s.value for s in (WorkflowStatusString.ENQUEUED, WorkflowStatusString.PENDING,
                                WorkflowStatusString.DELAYED)}  # fmt: skip
ENDED = {WorkflowStatusString.ERROR.value, WorkflowStatusString.CANCELLED.value,
         WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED.value}  # fmt: skip


@dataclass(frozen=True)
class Look:
    start: list[NodeRoleRecord]  # to enqueue now
    checked: list[str]  # the walk's active node-roles compared so far
    running: bool  # something is still running


def workflow_id(deployment: str) -> str:
    return f"apply-{deployment}-{uuid.uuid4().hex[:8]}"


@DBOS.dbos_class()
class Applier(DBOSConfiguredInstance):
    """Detached applies on one engine (see allocate.workflow.Allocator for the pattern)."""

    def __init__(self, engine: Engine, allocator: Allocator, converger: Converger) -> None:
        self.e, self.allocator, self.converger = engine, allocator, converger
        super().__init__("interlock-apply")

    @DBOS.step()
    async def nodes(self, deployment: str) -> NodesPlanned:
        spec, _, sites = on_record(self.e, deployment)
        return await plan_nodes(self.e, spec, sites, retry=True)

    @DBOS.step()
    async def allocating(self, deployment: str) -> bool:
        return any(n.status in OPEN for n in self.e.store.nodes(deployment))

    @DBOS.step()
    async def prepare(self, deployment: str) -> None:
        spec, source, _ = on_record(self.e, deployment)
        await prepare(self.e, spec, bind(spec), source, retry=True)

    @DBOS.step()
    async def look(self, deployment: str, checked: list[str], started: list[str]) -> Look:
        e = self.e
        for r in e.store.roles(deployment):  # a run that died without its outcome
            if r.state == "running" and r.workflow_id in started:
                status = await DBOS.get_workflow_status_async(r.workflow_id)
                if status is not None and status.status in ENDED:
                    failed(e, r, f"its run ended: {status.status} {status.error or ''}".strip())
        spec, _, _ = on_record(e, deployment)
        seen = set(checked)
        start = next_round(e, deployment, bind(spec), seen, set(started))
        running = any(r.state == "running" for r in e.store.roles(deployment))
        return Look(start=start, checked=sorted(seen), running=running)

    @DBOS.step()
    async def ended(self, deployment: str, error: str | None) -> None:
        record = self.e.store.deployment(deployment)
        if record is not None:
            self.e.store.put_deployment(
                record.model_copy(update={"applying": None, "error": error})
            )

    @DBOS.workflow()
    async def apply(self, deployment: str) -> str:
        """The deployment made what its file (on record) says; returns 'done' or 'error'."""
        try:
            planned = await self.nodes(deployment)
            await enqueue_nodes(self.allocator, planned.under_way)
            while await self.allocating(deployment):
                await DBOS.sleep_async(LOOK_EVERY)
            await self.prepare(deployment)
            checked: list[str] = []
            started: list[str] = []
            while True:
                look = await self.look(deployment, checked, started)
                checked = look.checked
                for r in look.start:
                    assert r.workflow_id is not None
                    await enqueue_role(self.converger, r)
                    started.append(r.workflow_id)
                if not look.start and not look.running:
                    break
                await DBOS.sleep_async(LOOK_EVERY)
        except InterlockError as err:
            await self.ended(deployment, str(err))
            return "error"
        except Exception as err:  # a bug: on record as well, then DBOS's (ERROR)
            with suppress(Exception):  # cancelled: no step runs any more
                await self.ended(deployment, f"{type(err).__name__}: {err}"[:300])
            raise
        await self.ended(deployment, None)
        return "done"


async def under_way(e: Engine, deployment: str) -> str | None:
    """The workflow id of the workers' detached apply of `deployment`, if under way."""
    record = e.store.deployment(deployment)
    if record is None or record.applying is None:
        return None
    status = await DBOS.get_workflow_status_async(record.applying)
    return record.applying if status is not None and status.status in UNDER_WAY else None


async def not_applying(e: Engine, deployment: str) -> None:
    """Refuse a second apply while the workers' detached one is under way."""
    wid = await under_way(e, deployment)
    if wid is not None:
        raise InterlockError(
            f"deployment {deployment!r} is being applied by the workers ({wid}); "
            f"`interlock status {deployment}` follows it",
            ExitCode.FAILURE,
        )


async def wait(wid: str) -> None:
    """Until the detached apply `wid` has ended (run here, or by a worker)."""
    handle: WorkflowHandleAsync[str] = await DBOS.retrieve_workflow_async(wid)
    with suppress(Exception):  # how it ended is on the deployment's record (`ended`)
        await handle.get_result(polling_interval_sec=LOOK_EVERY)


async def enqueue(applier: Applier, deployment: str) -> str:
    """The deployment's apply on the deployments queue; returns its workflow id."""
    wid = workflow_id(deployment)
    record = applier.e.store.deployment(deployment)
    assert record is not None
    applier.e.store.put_deployment(record.model_copy(update={"applying": wid, "error": None}))
    queue = await DBOS.retrieve_queue_async(DEPLOYMENTS)
    assert queue is not None
    with SetWorkflowID(wid):
        await queue.enqueue_async(applier.apply, deployment)
    return wid
