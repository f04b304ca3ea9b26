"""Converging a deployment's node-role graph, durably.

Each node-role run is a DBOS workflow (id: the node-role and its attempt) whose steps
are: mark it running, gather its inputs, run it, record the outcome. Killed at any
point, a run goes on from its last finished step when DBOS recovers it; an active
node-role is never run again. The walk over the graph (`converge`) is plain code over
the store: it starts what is ready (every node-role it waits for active, no other run
on its node), marks what an error blocks, and is safe to run again (`apply`, `resume`)
since starting a workflow id twice attaches to the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from dbos import DBOS, DBOSConfiguredInstance, SetWorkflowID, WorkflowHandleAsync

from interlock.compose import facts, runner
from interlock.compose.graph import Graph, node_order
from interlock.compose.roles import Role, load_role
from interlock.engine import Engine
from interlock.model import Frozen
from interlock.queues import ROLES
from interlock.state import NodeRoleRecord

RoleProgress = Callable[[list[NodeRoleRecord]], None]


class Inputs(Frozen):
    values: dict[str, Any]
    sources: dict[str, str]
    secret: tuple[str, ...]
    digest: str


def role_of(e: Engine, deployment: str, name: str) -> Role:
    record = e.store.deployment(deployment)
    if record is None or name not in record.role_dirs:
        raise RuntimeError(f"deployment {deployment!r} has no role {name!r} on record")
    from pathlib import Path

    return load_role(Path(record.role_dirs[name]))


def gather(e: Engine, deployment: str, node: str, role: Role) -> Inputs | None:
    """The node-role's inputs, exactly those its role declares; None while something it
    wants is not there yet."""
    record = e.store.deployment(deployment)
    nodes = {n.name: n for n in e.store.nodes(deployment)}
    me = nodes.get(node)
    if record is None or me is None or me.facts is None:
        return None
    peers = [n.facts for n in nodes.values() if n.facts is not None]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    secret: list[str] = []
    known = facts.attributes(me.facts, peers)
    for name in role.facts:
        values[name] = known[name]
        why = facts.cluster_address(me.facts, peers)[1] if name == "cluster_address" else name
        sources[name] = f"fact: {why}"
    others = {(r.node, r.role): r for r in e.store.roles(deployment)}
    for name, want in role.wants.items():
        givers = sorted(
            (r for (n, r_name), r in others.items() if r_name == want.role),
            key=lambda r: node_order(r.node),
        )
        if not givers or any(g.state != "active" for g in givers):
            return None
        got = [g.outputs.get(want.attribute) for g in givers]
        values[name] = got if want.all else got[0]
        where = ", ".join(g.node for g in givers) if want.all else givers[0].node
        sources[name] = f"{want.role}.{want.attribute} on {where}"
        if any(want.attribute in g.secret for g in givers):
            secret.append(name)
    own = record.attributes.get(role.name, {})
    given = (record.spec.get("attributes") or {}).get(role.name, {})  # type: ignore[attr-defined]
    for name in role.attributes:
        if name in own:
            values[name] = own[name]
            sources[name] = "deployment file" if name in given else "role default"
    # What the run was given, and the role as it was: a changed script runs again too.
    digest = hashlib.sha256(
        json.dumps(values, sort_keys=True).encode() + _folder_digest(role).encode()
    ).hexdigest()
    return Inputs(values=values, sources=sources, secret=tuple(secret), digest=digest)


def _folder_digest(role: Role) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in role.folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(role.folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@DBOS.dbos_class()
class Converger(DBOSConfiguredInstance):
    """Node-role runs on one engine (see allocate.workflow.Allocator for the pattern)."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        super().__init__("interlock-compose")

    @DBOS.step()
    async def begin(self, node: str, role: str) -> int:
        """The run starts; returns how many runs the node-role had before."""
        nr = self.e.store.update_role(node, role, state="running", error=None, blocked_by=None)
        return nr.runs

    @DBOS.step()
    async def inputs(self, deployment: str, node: str, role: str) -> Inputs:
        found = gather(self.e, deployment, node, role_of(self.e, deployment, role))
        if found is None:  # the walk starts a run only when its inputs are there
            raise RuntimeError(f"{node}/{role}: inputs not ready")
        return found

    @DBOS.step()
    async def execute(self, deployment: str, node: str, role: str, got: Inputs) -> runner.Outcome:
        e = self.e
        record = e.store.get(node)
        if record is None or record.public_ip is None or record.host_key is None:
            return runner.Outcome(ok=False, error=f"{node} is not ready")
        target = runner.Target(
            node=node, address=record.public_ip, host_key=record.host_key, key_file=e.platform[0]
        )
        return await runner.run(role_of(e, deployment, role), target, got.values, list(got.secret))

    @DBOS.step()
    async def finish(
        self, deployment: str, node: str, role: str, runs: int, got: Inputs,
        outcome: runner.Outcome,
    ) -> str:  # fmt: skip
        shown = {k: v for k, v in got.values.items() if k not in got.secret}
        common: dict[str, Any] = dict(
            inputs_from=got.sources, shown_inputs=shown, tail=outcome.tail, runs=runs + 1,
            sessions=outcome.sessions, seconds=round(outcome.seconds, 2),
        )  # fmt: skip
        if outcome.ok:
            provides = role_of(self.e, deployment, role).provides
            self.e.store.update_role(
                node, role, state="active", outputs=outcome.outputs, digest=got.digest,
                secret=[k for k, p in provides.items() if p.secret], error=None, **common,
            )  # fmt: skip
            return "active"
        self.e.store.update_role(node, role, state="error", error=outcome.error, **common)
        return "error"

    @DBOS.workflow()
    async def run_node_role(self, deployment: str, node: str, role: str) -> str:
        runs = await self.begin(node, role)
        got = await self.inputs(deployment, node, role)
        outcome = await self.execute(deployment, node, role, got)
        return await self.finish(deployment, node, role, runs, got, outcome)


def workflow_id(node: str, role: str, attempt: int) -> str:
    return f"role-{node}-{role}-{attempt}-{uuid.uuid4().hex[:6]}"


def next_round(
    e: Engine, deployment: str, graph: Graph, checked: set[str], tracked: set[str]
) -> list[NodeRoleRecord]:
    """One look over the deployment's node-roles: those to start now, each marked running
    (first, running ones whose workflow id no walk follows: `tracked`). On the way, an
    active one whose inputs changed is made pending again (once per walk: `checked`
    grows), and what a failure blocks is marked blocked."""
    records = {r.id: r for r in e.store.roles(deployment)}
    nodes = {n.name: n for n in e.store.nodes(deployment)}
    busy = {r.node for r in records.values() if r.state == "running"}
    start = [r for _, r in sorted(records.items())
             if r.state == "running" and r.workflow_id not in tracked]  # fmt: skip
    for ident in order(graph):
        found = records.get(ident)
        comparable = found is not None and found.state == "active" and ident not in checked
        if found is not None and comparable and _ready_to_compare(found, graph, records):
            checked.add(ident)
            if _changed(e, deployment, found):
                attempt = found.attempt + 1
                found = e.store.update_role(
                    found.node, found.role, state="pending", attempt=attempt,
                    workflow_id=workflow_id(found.node, found.role, attempt),
                )  # fmt: skip
                records[ident] = found
        if found is None or found.state != "pending":
            continue
        r = found
        node = nodes.get(r.node)
        if node is None or node.status != "ready":
            why = f"node {r.node}: {node.error if node else 'gone'}"
            if node is not None and node.status == "failed":
                e.store.update_role(r.node, r.role, state="blocked", blocked_by=why)
            continue
        stuck = [d for d in graph.deps.get(ident, ()) if records[d].state in
                 ("error", "blocked")]  # fmt: skip
        if stuck:
            e.store.update_role(r.node, r.role, state="blocked", blocked_by=stuck[0])
            continue
        waiting = any(records[d].state != "active" for d in graph.deps.get(ident, ()))
        if waiting or r.node in busy:
            continue
        busy.add(r.node)
        start.append(e.store.update_role(r.node, r.role, state="running"))
    return start


async def converge(
    e: Engine, converger: Converger, deployment: str, graph: Graph, progress: RoleProgress
) -> list[NodeRoleRecord]:
    """Walk the graph until nothing more can run; returns the node-roles as they end."""
    tasks: dict[str, tuple[NodeRoleRecord, asyncio.Future[Any]]] = {}  # by workflow id
    checked: set[str] = set()  # active node-roles whose inputs this walk compared
    while True:
        for r in next_round(e, deployment, graph, checked, set(tasks)):
            assert r.workflow_id is not None
            tasks[r.workflow_id] = (r, await _start(converger, r))
        progress(e.store.roles(deployment))
        if not tasks:
            return e.store.roles(deployment)
        done, _ = await asyncio.wait([f for _, f in tasks.values()], timeout=0.5,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        for wid, (r, task) in list(tasks.items()):
            if task in done:
                del tasks[wid]
                if task.exception() is not None:  # a bug or the store: on record, go on
                    failed(e, r, f"{type(task.exception()).__name__}: {task.exception()}")


def failed(e: Engine, r: NodeRoleRecord, why: str) -> None:
    """A node-role run that ended without recording its outcome (a bug, the store)."""
    e.store.update_role(r.node, r.role, state="error", error=why[:300])


def _ready_to_compare(r: NodeRoleRecord, graph: Graph, records: dict[str, NodeRoleRecord]) -> bool:
    """Everything the node-role waits for is active (its inputs are final)."""
    return all(records[d].state == "active" for d in graph.deps.get(r.id, ()) if d in records)


def _changed(e: Engine, deployment: str, r: NodeRoleRecord) -> bool:
    """Whether an active node-role's inputs (or its role) are not what it ran with."""
    got = gather(e, deployment, r.node, role_of(e, deployment, r.role))
    return got is not None and got.digest != r.digest


async def enqueue(converger: Converger, r: NodeRoleRecord) -> WorkflowHandleAsync[str]:
    """The node-role's run on the roles queue (a worker, or this process, takes it); its
    workflow id is on record, so enqueuing it again attaches to the first."""
    assert r.workflow_id is not None
    queue = await DBOS.retrieve_queue_async(ROLES)
    assert queue is not None
    with SetWorkflowID(r.workflow_id):
        return await queue.enqueue_async(converger.run_node_role, r.deployment, r.node, r.role)


async def _start(converger: Converger, r: NodeRoleRecord) -> asyncio.Future[Any]:
    handle = await enqueue(converger, r)
    return asyncio.ensure_future(handle.get_result(polling_interval_sec=0.25))


def order(graph: Graph) -> list[str]:
    """Node-roles with what they wait for first (the graph is acyclic: the file's check)."""
    out: list[str] = []
    seen: set[str] = set()

    def visit(ident: str) -> None:
        if ident in seen:
            return
        seen.add(ident)
        for d in sorted(graph.deps.get(ident, ())):
            visit(d)
        out.append(ident)

    for ident in sorted(graph.bindings):
        visit(ident)
    return out
