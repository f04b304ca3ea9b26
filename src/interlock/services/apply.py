"""Deployments of roles as a service: apply a deployment file (nodes through the eight
steps, the deployment's ports opened, node facts read, node-roles bound and converged),
its status, the role library."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from interlock import firewall, yamlfile
from interlock.compose import facts
from interlock.compose.converge import RoleProgress, converge, order, workflow_id
from interlock.compose.graph import Graph, bind, node_names
from interlock.compose.roles import Library
from interlock.compose.spec import DeploymentSpec, load_deployment, overlapping
from interlock.engine import Engine
from interlock.errors import ExitCode, InterlockError
from interlock.model import Fixup
from interlock.state import DeploymentRecord, NodeRecord, NodeRoleRecord, Progress

if TYPE_CHECKING:
    from interlock.durable import Durable


@dataclass
class Applied:
    deployment: str
    nodes: list[NodeRecord]
    roles: list[NodeRoleRecord]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)  # node-roles run by this apply

    @property
    def converged(self) -> bool:
        return bool(self.roles) and all(r.state == "active" for r in self.roles)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.ran)


def check(
    path: Path, sites: list[str] | None, name: str | None = None
) -> tuple[DeploymentSpec, list[str]]:
    """The file and the sites it goes to, checked; nothing is created. `name` replaces
    the file's deployment name."""
    spec = load_deployment(path)
    if name is not None:
        try:
            spec = DeploymentSpec.model_validate(
                {**spec.model_dump(mode="json"), "name": name},
                context={"base": path.resolve().parent},
            )
        except ValidationError:
            raise InterlockError(
                "--name: lower case letters and digits, starting with a letter (at most 31)",
                ExitCode.BAD_INPUT,
            ) from None
    chosen = sites or spec.sites
    if not chosen:
        raise InterlockError(
            f"{path}: field 'sites': none given (add sites: to the file, or --site)",
            ExitCode.BAD_INPUT,
        )
    return spec, chosen


async def apply(
    e: Engine,
    path: Path,
    sites: list[str] | None,
    progress: Progress,
    role_progress: RoleProgress,
    name: str | None = None,
) -> Applied:
    from interlock.durable import running
    from interlock.services import applier  # it runs this module's phases

    spec, chosen = await _checked(e, path, sites, name)
    with running(e) as durable:
        await applier.not_applying(e, spec.name)
        _record(e, spec, path, chosen)
        return await _make(e, durable, spec, path, chosen, progress, role_progress, retry=True)


async def apply_detached(
    e: Engine, path: Path, sites: list[str] | None, name: str | None = None
) -> tuple[str, str]:
    """`apply`, run by the workers (services.applier): checked and on record here, then
    enqueued. Returns the deployment's name and the apply's workflow id."""
    from interlock.durable import running
    from interlock.services import applier

    spec, chosen = await _checked(e, path, sites, name)
    with running(e, "client") as durable:
        await applier.not_applying(e, spec.name)
        _record(e, spec, path, chosen)
        return spec.name, await applier.enqueue(durable.applier, spec.name)


async def _checked(
    e: Engine, path: Path, sites: list[str] | None, name: str | None
) -> tuple[DeploymentSpec, list[str]]:
    """The file, the sites and the request checked, before anything is made."""
    spec, chosen = check(path, sites, name)
    e.check_sites(chosen)
    have = {n.name for n in e.store.nodes(spec.name) if n.status != "failed"}
    making = False
    for g, names in node_names(spec).items():  # a request no site can meet fails here
        if set(names) - have:
            making = True
            for site in chosen:
                await e.choose(site, spec.groups[g].traits)
    # The deployment's own ranges (pods, services) apart from the sites' networks, as the
    # APIs show them before any node is made, and as the nodes show them after.
    networks = [(f"network {n.name} of site {site}", c) for site in (chosen if making else [])
                for n in (await e.metadata(site)).networks for c in n.cidrs]  # fmt: skip
    networks += [(f"the network of {n.name}", n.facts.network_cidr)
                 for n in e.store.nodes(spec.name) if n.facts]  # fmt: skip
    clash = overlapping(spec, networks)
    if clash:
        raise yamlfile.field_error(path, *clash)
    other = [n for n in e.store.nodes(spec.name) if n.group is None]
    if other:
        raise InterlockError(
            f"deployment {spec.name!r} exists and was made by `interlock up`; "
            f"`interlock down {spec.name}` first",
            ExitCode.BAD_INPUT,
        )
    return spec, chosen


async def _make(
    e: Engine,
    durable: Durable,
    spec: DeploymentSpec,
    source: Path,
    sites: list[str],
    progress: Progress,
    role_progress: RoleProgress,
    retry: bool,
) -> Applied:
    """The deployment's nodes as its groups say, its ports open, its node-roles bound and
    converged. `retry` (apply): failed nodes are made again and failed node-roles run
    again; without (resume), only what was under way is finished."""
    from interlock.allocate.deployment import enqueue, follow

    graph = bind(spec)
    planned = await plan_nodes(e, spec, sites, retry)
    if planned.under_way:
        await enqueue(durable.allocator, planned.under_way)
        await follow(e, [n.name for n in planned.under_way], spec.name, progress)
    await prepare(e, spec, graph, source, retry)
    runs = {r.id: r.runs for r in e.store.roles(spec.name)}
    roles = await converge(e, durable.converger, spec.name, graph, role_progress)
    return Applied(
        deployment=spec.name,
        nodes=e.store.nodes(spec.name),
        roles=roles,
        added=planned.added,
        removed=planned.removed,
        ran=[r.id for r in roles if r.runs > runs.get(r.id, 0)],
    )


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


def _record(e: Engine, spec: DeploymentSpec, path: Path, sites: list[str]) -> None:
    used = {b.role for b in bind(spec).bindings.values()}
    roles = {name: spec.library.roles[name] for name in used}
    e.store.put_deployment(
        DeploymentRecord(
            name=spec.name,
            file=str(path.resolve()),
            sites=sites,
            spec=spec.model_dump(mode="json"),
            role_dirs={name: str(r.folder.resolve()) for name, r in roles.items()},
            attributes={name: spec.attribute_values(r) for name, r in roles.items()},
        )
    )


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

    from interlock.ssh.remote import CONNECT_TIMEOUT, as_root, run

    async def read(n: NodeRecord) -> None:
        assert n.public_ip and n.host_key
        known = asyncssh.import_known_hosts(f"{n.public_ip} {n.host_key}\n")
        async with asyncssh.connect(
            n.public_ip, username="root", client_keys=[str(e.platform[0])],
            known_hosts=known, agent_path=None, connect_timeout=CONNECT_TIMEOUT,
        ) as conn:  # fmt: skip
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


async def resume(e: Engine, progress: Progress, role_progress: RoleProgress) -> list[Applied]:
    """Finish what an interrupted `apply` left, wherever it died: its nodes' allocations,
    then its node-roles (an active one is not run again; failed ones stay failed). A
    detached apply under way is left to its workflow, and waited for."""
    import asyncio

    from interlock.durable import running
    from interlock.services import applier

    out: list[Applied] = []
    names = sorted({n.deployment for n in e.store.nodes() if n.group is not None})
    names = [name for name in names if e.store.deployment(name) is not None]
    with running(e, applies=True) as durable:
        detached = {name: await applier.under_way(e, name) for name in names}
        await asyncio.gather(*(applier.wait(wid) for wid in detached.values() if wid))
        for name in names:
            if detached[name] or not _unfinished(e, name):
                continue
            spec, source, sites = on_record(e, name)
            out.append(
                await _make(e, durable, spec, source, sites, progress, role_progress, retry=False)
            )
    return out


def _unfinished(e: Engine, deployment: str) -> bool:
    nodes = e.store.nodes(deployment)
    records = e.store.roles(deployment)
    bound = {r.node for r in records}
    return (
        any(n.status in ("pending", "allocating") for n in nodes)
        or any(r.state in ("pending", "running") for r in records)
        or any(n.status == "ready" and n.name not in bound for n in nodes)
    )


def status(
    e: Engine, deployment: str
) -> tuple[DeploymentRecord, list[NodeRecord], list[NodeRoleRecord]]:
    record = e.store.deployment(deployment)
    if record is None:
        raise InterlockError(f"no deployment {deployment!r} applied", ExitCode.NOT_RUNNING)
    return record, e.store.nodes(deployment), e.store.roles(deployment)


def deployments(e: Engine) -> list[tuple[DeploymentRecord, list[NodeRecord], list[NodeRoleRecord]]]:
    return [(d, e.store.nodes(d.name), e.store.roles(d.name)) for d in e.store.deployments()]


def library(folders: list[Path]) -> Library:
    return Library(folders)
