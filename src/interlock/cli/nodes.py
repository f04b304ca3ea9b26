"""Node commands: sites, plan, up, resume, ls, down."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from interlock.cli import render
from interlock.cli.options import (
    CpusOpt,
    JsonOpt,
    MemOpt,
    OsOpt,
    SiteOpt,
    SitesOpt,
    engine,
    site_list,
    traits,
)

if TYPE_CHECKING:
    from interlock.state import NodeRecord, Progress

T = TypeVar("T")
out = render.console()
err = render.console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command()(sites)
    app.command()(plan)
    app.command()(up)
    app.command()(resume)
    app.command("ls")(ls_)
    app.command()(down)


def sites(sites_file: SitesOpt = None, as_json: JsonOpt = False) -> None:
    """List the configured sites."""
    from interlock.views import SiteSummary

    e = engine(sites_file)
    rows = [SiteSummary.of(name, cfg) for name, cfg in e.sites.sites.items()]
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    columns = ("site", "provider", "region", "concurrency", "rate/s")
    shown = [(r.site, r.provider, r.region, r.concurrency, f"{r.rate:g}") for r in rows]
    render.table(out, render.plain_table(columns, shown))


def plan(
    site: SiteOpt = None,
    cpus: CpusOpt = 1,
    memory: MemOpt = 0.5,
    os_: OsOpt = "ubuntu-24.04",
    sites_file: SitesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show per site what a node would get, and why. Creates nothing."""
    from interlock.services import deploy

    e = engine(sites_file)
    choices = _run(deploy.plan(e, site_list(e, site), traits(cpus, memory, os_)))
    if as_json:
        print(json.dumps({k: v.model_dump() for k, v in choices.items()}, indent=2))
        return
    for name, c in choices.items():
        render.lines(out, [name, *(f"  • {reason}" for reason in c.reasons)])


def up(
    name: Annotated[str, typer.Argument(help="Deployment name; nodes are NAME-1 … NAME-N.")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000)] = 1,
    site: SiteOpt = None,
    cpus: CpusOpt = 1,
    memory: MemOpt = 0.5,
    os_: OsOpt = "ubuntu-24.04",
    sites_file: SitesOpt = None,
    as_json: JsonOpt = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="Enqueue for the workers and return (follow with `interlock ls`)."
        ),
    ] = False,
) -> None:
    """Allocate SSH-ready, root-secured nodes (the eight steps, durable). Run by the
    workers that are up (`interlock worker`), else by this command itself."""
    from interlock.errors import ExitCode, InterlockError
    from interlock.services import deploy

    if not all(c.isalnum() or c == "-" for c in name) or not name[:1].isalpha():
        raise InterlockError(
            "NAME: letters, digits and dashes, starting with a letter", ExitCode.BAD_INPUT
        )
    e = engine(sites_file)
    names, wanted = site_list(e, site), traits(cpus, memory, os_)
    if detach:
        from interlock import workers

        queued = _run(deploy.up(e, name, count, names, wanted, lambda _: None, detach=True))
        if as_json:
            print(json.dumps({"deployment": name, "enqueued": [n.name for n in queued]}))
        else:
            render.lines(out, [f"{name}: {len(queued)} node(s) enqueued"])
        if not workers.live(e.store).any:
            why = "no worker is up: `interlock worker` (or `interlock resume`) runs them"
            render.lines(err, [why])
        return
    result = _live(lambda p: deploy.up(e, name, count, names, wanted, p), as_json)
    _report(result, as_json)


def resume(sites_file: SitesOpt = None, as_json: JsonOpt = False) -> None:
    """Finish what an interrupted `interlock up` or `interlock apply` left: allocations,
    then node-roles (active ones are not run again)."""
    from interlock.services import apply, deploy

    e = engine(sites_file)
    nodes = _live(lambda p: deploy.resume(e, p), as_json)
    seen: dict[str, str] = {}

    def roles_line(records: list[Any]) -> None:
        for r in records:
            if seen.get(r.id) != r.state and not as_json:
                render.lines(err, [f"{r.id} {r.state}"])
            seen[r.id] = r.state

    applied = _run(apply.resume(e, lambda n: None, roles_line))
    for a in applied:
        done = sum(r.state == "active" for r in a.roles)
        if not as_json:
            render.lines(out, [f"{a.deployment}: {done} of {len(a.roles)} node-roles active"])
    if any(not a.converged for a in applied):
        from interlock.errors import ExitCode

        _report(nodes, as_json)
        raise typer.Exit(ExitCode.FAILURE)
    _report(nodes, as_json)


def ls_(sites_file: SitesOpt = None, as_json: JsonOpt = False) -> None:
    """List nodes."""
    from interlock.services import deploy

    found = deploy.nodes(engine(sites_file))
    if as_json:
        from interlock.views import NodeView

        print(json.dumps([NodeView.of(n).model_dump(mode="json") for n in found], indent=2))
    else:
        render.nodes(out, found)


def down(
    name: Annotated[str | None, typer.Argument(help="Deployment to release.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Release every node.")] = False,
    sites_file: SitesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Release nodes: servers, floating IPs, keys."""
    from interlock.errors import ExitCode, InterlockError
    from interlock.services import deploy

    if (name is None) == (not all_):
        raise InterlockError("give a deployment NAME or --all (not both)", ExitCode.BAD_INPUT)
    done = _run(deploy.down(engine(sites_file), None if all_ else name))
    if as_json:
        print(json.dumps({"released": done.released, "kept": done.kept}))
    else:
        render.lines(out, [f"released {len(done.released)} node(s)"])
    if done.kept:
        kept = [n for n in deploy.nodes(engine(sites_file)) if n.name in done.kept]
        render.lines(
            err, [f"not released (run `interlock down` again): {n.name}: {n.error}" for n in kept]
        )
        raise typer.Exit(ExitCode.FAILURE)


def _live(
    start: Callable[[Progress], Coroutine[Any, Any, list[NodeRecord]]], as_json: bool
) -> list[NodeRecord]:
    """Run `start` with progress: a live table in a terminal, a line per change elsewhere
    (on stderr; none with --json)."""
    if as_json or not out.is_terminal:
        seen: dict[str, str] = {}

        def log(nodes: list[NodeRecord]) -> None:
            for n in nodes:
                state = f"{n.status}:{n.stage}"
                if seen.get(n.name) != state and not as_json:
                    line = f"{n.name} [{n.site or '-'}] {n.status} {n.stage}"
                    render.lines(err, [line])  # "[aws]" is the site, not a rich style
                seen[n.name] = state

        return _run(start(log))
    from rich.live import Live

    with Live(render.node_table([]), console=out, refresh_per_second=8) as live:
        return _run(start(lambda n: live.update(render.node_table(n))))


def _report(nodes: list[NodeRecord], as_json: bool) -> None:
    from interlock.errors import ExitCode
    from interlock.views import NodeView

    if as_json:
        print(json.dumps([NodeView.of(n).model_dump(mode="json") for n in nodes], indent=2))
    else:
        render.nodes(out, nodes, "result")
    if any(n.status != "ready" for n in nodes):
        raise typer.Exit(ExitCode.FAILURE)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # here, not at the top: `interlock --help` never needs it

    return asyncio.run(coro)
