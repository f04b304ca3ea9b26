"""Roles and deployments: apply, status, roles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from interlock.cli import render
from interlock.cli.options import JsonOpt, SiteOpt, SitesOpt, engine

if TYPE_CHECKING:
    from interlock.engine import Engine
    from interlock.services.apply import Applied
    from interlock.state import DeploymentRecord, NodeRecord, NodeRoleRecord

out = render.console()
err = render.console(stderr=True)
RolesFromOpt = Annotated[
    list[Path] | None,
    typer.Option("--roles", help="A folder of your own roles (repeat for more)."),
]


def register(app: typer.Typer) -> None:
    app.command()(apply)
    app.command()(status)
    app.command()(roles)
    app.command()(kubeconfig)


def apply(
    file: Annotated[Path, typer.Argument(help="The deployment file (see README: Roles).")],
    site: SiteOpt = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Deployment name instead of the file's (one file, "
            "several deployments: a site each).",
        ),
    ] = None,
    sites_file: SitesOpt = None,
    as_json: JsonOpt = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="Checked and enqueued for the workers, then return "
            "(follow with `interlock status NAME`).",
        ),
    ] = False,
) -> None:
    """Make a deployment what its file says: nodes through the eight steps, then its
    roles converged on them. Again after a failure, it retries what failed; on a
    converged deployment it changes nothing."""
    import asyncio

    from interlock.errors import ExitCode
    from interlock.services import apply as service

    e = engine(sites_file)
    sites = [s.strip() for s in site.split(",") if s.strip()] if site else None
    service.check(file, sites, name)  # a bad file: one line, before anything else
    if detach:
        _detached(*asyncio.run(service.apply_detached(e, file, sites, name)), e, as_json)
        return
    from interlock.views import node_line, role_line

    seen: dict[str, str] = {}

    def node_progress(nodes: list[NodeRecord]) -> None:
        for n in nodes:
            state = f"{n.status} {n.stage}"
            if seen.get(n.name) != state and not as_json:
                render.lines(err, [node_line(n)])
            seen[n.name] = state

    def role_progress(records: list[NodeRoleRecord]) -> None:
        for r in records:
            first = r.id not in seen and r.state in ("active", "pending")  # nothing new
            if seen.get(r.id) != r.state and not as_json and not first:
                render.lines(err, [role_line(r)])
            seen[r.id] = r.state

    done = asyncio.run(service.apply(e, file, sites, node_progress, role_progress, name))
    if as_json:
        from interlock.views import AppliedView

        print(AppliedView.of(done).model_dump_json(indent=2))
    else:
        _summary(done)
    if not done.converged or any(n.status != "ready" for n in done.nodes):
        raise typer.Exit(ExitCode.FAILURE)


def _detached(deployment: str, workflow: str, e: Engine, as_json: bool) -> None:
    from interlock import workers

    if as_json:
        print(json.dumps({"deployment": deployment, "workflow": workflow}))
    else:
        render.lines(out, [f"{deployment}: apply enqueued ({workflow}); "
                           f"`interlock status {deployment}` follows it"])  # fmt: skip
    if not workers.live(e.store).any:
        render.lines(err, ["no worker is up: `interlock worker` (or `interlock resume`) runs it"])


def _summary(done: Applied) -> None:
    if not done.changed and done.converged:
        render.lines(out, [f"{done.deployment}: nothing to change "
                           f"({len(done.roles)} node-roles active)"])  # fmt: skip
        return
    counts: dict[str, int] = {}
    for r in done.roles:
        counts[r.state] = counts.get(r.state, 0) + 1
    shown = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    parts = [f"{len(done.ran)} run"]
    if done.added:
        parts.append(f"{len(done.added)} node(s) added")
    if done.removed:
        parts.append(f"{len(done.removed)} removed")
    render.lines(out, [f"{done.deployment}: {shown} ({'; '.join(parts)})"])
    _graph(done.nodes, done.roles, attributes=False)


def status(
    name: Annotated[str | None, typer.Argument(help="Deployment name (none: list them).")] = None,
    attributes: Annotated[
        bool, typer.Option("--attributes", help="Show each node-role's inputs and their sources.")
    ] = False,
    sites_file: SitesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A deployment's nodes and node-roles: what is active, running, failed or blocked."""
    from interlock.services import apply as service

    if name is None:
        _deployments(service.deployments(engine(sites_file)), as_json)
        return
    record, nodes, records = service.status(engine(sites_file), name)
    if as_json:
        from interlock.views import DeploymentStatus

        print(DeploymentStatus.of(record, nodes, records).model_dump_json(indent=2))
        return
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    shown = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no node-roles"
    render.lines(out, [f"{record.name} ({', '.join(record.sites)}): {len(nodes)} node(s), "
                       f"{shown}"])  # fmt: skip
    if record.applying:
        render.lines(out, [f"being applied by the workers ({record.applying})"])
    if record.error:
        render.lines(out, [f"the workers' apply stopped: {record.error}"])
    _graph(nodes, records, attributes)


def _deployments(
    found: list[tuple[DeploymentRecord, list[NodeRecord], list[NodeRoleRecord]]], as_json: bool
) -> None:
    from interlock.views import DeploymentSummary

    rows = [DeploymentSummary.of(d, nodes, records) for d, nodes, records in found]
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    shown = [
        (r.deployment, ",".join(r.sites), f"{r.ready}/{r.nodes}",
         ", ".join(f"{v} {k}" for k, v in r.node_roles.items()) or "-")
        for r in rows
    ]  # fmt: skip
    render.table(out, render.plain_table(("deployment", "sites", "ready", "node-roles"), shown))


def _graph(nodes: list[NodeRecord], records: list[NodeRoleRecord], attributes: bool) -> None:
    """Per node, its node-roles in the order they run: one line each, a mark for state."""
    from interlock.views import MARK, by_node

    ordered = by_node(records)
    lines: list[str] = []
    for n in nodes:
        head = f"{n.name}  [{n.site or '-'}]  {n.status}"
        if n.public_ip:
            head += f"  {n.public_ip}"
        if n.facts:
            head += f"  (private {n.facts.private_address})"
        lines.append(head)
        if n.status == "failed" and n.error:
            lines.append(f"    error: {n.error}")
        for r in ordered.get(n.name, []):
            line = f"  {MARK[r.state]} {r.role:<24} {r.state}"
            if r.state == "active" and r.seconds:
                line += f"  {r.seconds:.1f} s"
            if r.state == "error":
                line += f": {r.error}"
            if r.state == "blocked":
                line += f" by {r.blocked_by}"
            waits = sorted({v for k, v in r.inputs_from.items() if not v.startswith(("fact",
                            "deployment file", "role default"))})  # fmt: skip
            if waits and not attributes:
                line += "  ← " + "; ".join(waits)
            lines.append(line)
            if r.state == "error" and r.tail:
                lines += [f"      | {t}" for t in r.tail.splitlines()[-8:]]
            if attributes:
                for k, source in r.inputs_from.items():
                    value = r.shown_inputs.get(k, "(secret)")
                    lines.append(f"      {k} = {json.dumps(value)}   ← {source}")
                for k, v in r.shown_outputs().items():
                    lines.append(f"      → {k} = {json.dumps(v)}")
    render.lines(out, lines)


def roles(
    roles_from: RolesFromOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The role library: interlock's built-in roles and your folders' (--roles)."""
    from interlock.services import apply as service

    lib = service.library(roles_from or [])
    found = sorted(lib.roles.values(), key=lambda r: r.name)
    if as_json:
        from interlock.views import RoleView

        shown = [RoleView.model_validate({**r.model_dump(), "folder": r.folder}) for r in found]
        print(json.dumps([r.model_dump(mode="json") for r in shown], indent=2))
        return
    rows = [
        (r.name, "script" if r.script else "playbook", ", ".join(r.requires) or "-",
         ", ".join(f"{k}←{w.role}" for k, w in r.wants.items()) or "-",
         ", ".join(r.provides) or "-", r.description.split(". ")[0].split(" (")[0])
        for r in found
    ]  # fmt: skip
    columns = ("role", "kind", "requires", "wants", "provides", "description")
    render.table(out, render.plain_table(columns, rows))


def kubeconfig(
    name: Annotated[str, typer.Argument(help="A deployment with a Kubernetes control plane.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Where to write it (default: ./NAME.kubeconfig).")
    ] = None,
    sites_file: SitesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a kubeconfig (mode 0600) that reaches the deployment's API server on its
    control node's public address: `kubectl --kubeconfig FILE get nodes`."""
    from interlock.services import kubeconfig as service

    path = service.write(engine(sites_file), name, out_file or Path(f"{name}.kubeconfig"))
    if as_json:
        print(json.dumps({"kubeconfig": str(path)}))
    else:
        render.lines(out, [f"wrote {path} (kubectl --kubeconfig {path} get nodes)"])
