"""The phases of an apply, each safe to run again: the nodes planned (surplus and failed
ones released, missing ones on record), then, once they are made, the deployment's
ports opened, their facts read and its node-roles bound. An apply that follows
(services.apply) and the workers' detached one (services.applier) run the same ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from interlock import firewall, yamlfile
from interlock.compose import facts
from interlock.compose.converge import order, workflow_id
from interlock.compose.graph import Graph, node_names
from interlock.compose.spec import DeploymentSpec, overlapping
from interlock.engine import Engine
from interlock.errors import ExitCode, InterlockError
from interlock.model import Fixup
from interlock.state import NodeRecord, NodeRoleRecord


@dataclass
class NodesPlanned:
    added: list[str]  # new nodes, on record
    removed: list[str]  # nodes no group wants any more, released
    under_way: list[NodeRecord]  # every allocation to start or finish (the new ones too)


async def plan_nodes(
    e: Engine, spec: DeploymentSpec, sites: list[str], retry: bool
) -> NodesPlanned:
    """Nodes no group wants any more, and failed ones where `retry`, released; the missing
    ones on record (their allocations not started: see `under_way`). Safe to run again."""
    from interlock.allocate.deployment import down, put_new

    names = node_names(spec)
    wanted = {n for ns in names.values() for n in ns}
    have = {n.name: n for n in e.store.nodes(spec.name)}
    surplus = {n for n in have if n not in wanted}
    failed = {n for n, r in have.items() if n in wanted and r.status == "failed" and retry}
    if surplus | failed:
        released = await down(e, spec.name, surplus | failed)
        if released.kept:
            raise InterlockError(
                f"could not release {', '.join(released.kept)}: `interlock down` again",
                ExitCode.FAILURE,
            )
    for r in e.store.roles(spec.name):
        if r.node in surplus:
            e.store.forget_role(r.node, r.role)
    have = {n.name: n for n in e.store.nodes(spec.name)}
    missing = [
        (n, spec.groups[g].traits, g) for g, ns in names.items() for n in ns if n not in have
    ]
    put_new(e, spec.name, missing, sites)
    under_way = [n for n in e.store.nodes(spec.name) if n.status in ("pending", "allocating")]
    return NodesPlanned([m[0] for m in missing], sorted(surplus), under_way)


async def prepare(e: Engine, spec: DeploymentSpec, graph: Graph, source: Path, retry: bool) -> None:
    """Once the nodes are made: the deployment's ports open on the ready ones, their facts
    read, the node-roles bound (see `_bind`)."""
    ready = [n for n in e.store.nodes(spec.name) if n.status == "ready"]
    await _open_ports(e, spec, ready)
    await _read_facts(e, ready)
    facts_now = [(f"the network of {n.name}", n.facts.network_cidr)
                 for n in e.store.nodes(spec.name) if n.facts]  # fmt: skip
    clash = overlapping(spec, facts_now)  # where the site's API shows no ranges (metal)
    if clash:
        raise yamlfile.field_error(source, *clash)
    _bind(e, spec, graph, retry)


def on_record(e: Engine, name: str) -> tuple[DeploymentSpec, Path, list[str]]:
    """A deployment as last applied: its spec, file and sites, from the store."""
    record = e.store.deployment(name)
    if record is None:
        raise InterlockError(f"no deployment {name!r} applied", ExitCode.NOT_RUNNING)
    base = Path(record.file).parent
    spec = DeploymentSpec.model_validate(record.spec, context={"base": base})
    return spec, Path(record.file), record.sites


async def _open_ports(e: Engine, spec: DeploymentSpec, nodes: list[NodeRecord]) -> None:
    """The deployment's published ports, from the operator's address, in its own group
    (which admits all traffic among its members), where the node's groups do not."""
    ports = tuple(sorted({p.port for p in spec.ports}))
    if not ports:
        return
    for n in nodes:
        if not n.server_id or not n.public_ip:
            continue
        sources = firewall.operator_sources(e.sites.sites[n.site].ssh_from, n.public_ip)
        if await e.admitted(n.site, n.server_id, ports, sources):
            continue
        await e.open_own_group(n.site, n.server_id, spec.name, (firewall.SSH, *ports), sources)
        text = f"ports {', '.join(map(str, ports))} opened from {firewall.shown(sources)}"
        fix = Fixup(step="firewall", text=text)
        if fix not in n.fixups:
            e.store.update(n.name, fixups=[*n.fixups, fix])


async def _read_facts(e: Engine, nodes: list[NodeRecord]) -> None:
    """Each ready node's facts, read once (as root, the host key pinned)."""
    import asyncio

    import asyncssh

    from interlock.ssh.remote import as_root, connect, run

    async def read(n: NodeRecord) -> None:
        assert n.public_ip and n.host_key
        known = asyncssh.import_known_hosts(f"{n.public_ip} {n.host_key}\n")
        async with await connect(n.public_ip, "root", e.platform[0], known_hosts=known) as conn:
            text = await run(conn, as_root("root", facts.READ), "reading the node's facts")
        found = facts.parse(
            text,
            node=n.name,
            deployment=n.deployment,
            site=n.site,
            provider=e.sites.sites[n.site].provider,
            login_user=n.login_user or "root",
            public_address=n.public_ip,
            distro=n.image_os[0] if n.image_os else None,
            version=n.image_os[1] if n.image_os else None,
        )
        e.store.update(n.name, facts=found)

    await asyncio.gather(*(read(n) for n in nodes if n.facts is None and n.host_key))


def _bind(e: Engine, spec: DeploymentSpec, graph: Graph, retry: bool) -> None:
    """Node-roles on record as the graph says: new ones pending; gone ones forgotten;
    errors and blocks retried (a new attempt) where `retry`. Active ones whose inputs or
    role changed are found by the walk, once what they wait for is active again."""
    have = {r.id: r for r in e.store.roles(spec.name)}
    for ident, old in have.items():
        if ident not in graph.bindings:
            e.store.forget_role(old.node, old.role)
    rank = {ident: i for i, ident in enumerate(order(graph))}
    for ident, b in graph.bindings.items():
        r = have.get(ident)
        if r is None:
            e.store.put_role(
                NodeRoleRecord(
                    deployment=spec.name, node=b.node, role=b.role, group=b.group,
                    rank=rank[ident], workflow_id=workflow_id(b.node, b.role, 1),
                )
            )  # fmt: skip
        elif r.state in ("error", "blocked") and retry:
            attempt = r.attempt + 1
            e.store.update_role(
                b.node, b.role, state="pending", attempt=attempt, blocked_by=None,
                workflow_id=workflow_id(b.node, b.role, attempt),
            )  # fmt: skip
