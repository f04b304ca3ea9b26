"""Deployments of roles as a service: apply a deployment file (nodes through the eight
steps, the deployment's ports opened, node facts read, node-roles bound and converged),
its status, the role library."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from interlock import yamlfile
from interlock.compose.converge import RoleProgress, converge
from interlock.compose.graph import bind, node_names
from interlock.compose.roles import Library
from interlock.compose.spec import DeploymentSpec, load_deployment, overlapping
from interlock.engine import Engine
from interlock.errors import ExitCode, InterlockError
from interlock.services.phases import on_record, plan_nodes, prepare
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
    from interlock.services import applier

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


async def resume(e: Engine, progress: Progress, role_progress: RoleProgress) -> list[Applied]:
    """Finish what an interrupted `apply` left, wherever it died: its nodes' allocations,
    then its node-roles (an active one is not run again; failed ones stay failed). A
    detached apply under way is left to its workflow, and waited for."""
    import asyncio

    from interlock.durable import running
    from interlock.services import applier

    out: list[Applied] = []
    names = [d.name for d in e.store.deployments()]  # a detached one may have no node yet
    if not names:
        return out
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
