"""The node commands: sites, plan, up, resume, ls, ssh, ssh-config, inventory, down."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.live import Live
from rich.table import Table

from interlock import deploy, render
from interlock.allocate import workflow
from interlock.allocate.workflow import Engine
from interlock.errors import ExitCode, InterlockError
from interlock.model import Traits
from interlock.store import NodeRecord

T = TypeVar("T")
out = render.console()
err = render.console(stderr=True)

SitesOpt = Annotated[
    Path | None,
    typer.Option(
        "--sites",
        help="Sites file (default: $INTERLOCK_SITES, ~/.config/interlock/sites.yaml, the lab's).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SiteOpt = Annotated[
    str | None,
    typer.Option("--site", help="Sites in order of preference, comma-separated (default: all)."),
]
CpusOpt = Annotated[int, typer.Option("--cpus", min=1, help="At least this many vCPUs.")]
MemOpt = Annotated[float, typer.Option("--memory", help="At least this many GiB of memory.")]
OsOpt = Annotated[str, typer.Option("--os", help="DISTRO-VERSION, e.g. ubuntu-24.04.")]


def _traits(cpus: int, memory: float, os_: str) -> Traits:
    from pydantic import ValidationError

    try:
        return Traits(cpus=cpus, memory_gib=memory, os=os_)
    except ValidationError as e:
        first = e.errors()[0]
        raise InterlockError(
            f"--{first['loc'][0]}: {first['msg']}".replace("--memory_gib", "--memory"),
            ExitCode.BAD_INPUT,
        ) from None


def _site_list(e: Engine, site: str | None) -> list[str]:
    names = [s.strip() for s in site.split(",") if s.strip()] if site else list(e.sites.sites)
    deploy.check_sites(e, names)
    return names


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _with_workflows(e: Engine, coro: Coroutine[Any, Any, T]) -> T:
    workflow.start(e)
    try:
        return await coro
    finally:
        workflow.stop()


def register(app: typer.Typer) -> None:
    @app.command()
    def sites(sites_file: SitesOpt = None, as_json: JsonOpt = False) -> None:
        """List the configured sites."""
        e = deploy.open_engine(sites_file)
        rows: list[dict[str, Any]] = [
            {
                "site": name,
                "provider": cfg.provider,
                "region": cfg.region,
                "concurrency": cfg.limits.concurrency,
                "rate": cfg.limits.rate,
            }
            for name, cfg in e.sites.sites.items()
        ]
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        t = Table()
        for col in ("site", "provider", "region", "concurrency", "rate/s"):
            t.add_column(col)
        for r in rows:
            t.add_row(
                r["site"], r["provider"], r["region"], str(r["concurrency"]), f"{r['rate']:g}"
            )
        render.table(out, t)

    @app.command()
    def plan(
        site: SiteOpt = None,
        cpus: CpusOpt = 1,
        memory: MemOpt = 0.5,
        os_: OsOpt = "ubuntu-24.04",
        sites_file: SitesOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show per site what a node would get, and why. Creates nothing."""
        e = deploy.open_engine(sites_file)
        choices = _run(deploy.plan(e, _site_list(e, site), _traits(cpus, memory, os_)))
        if as_json:
            print(json.dumps({k: v.model_dump() for k, v in choices.items()}, indent=2))
            return
        for name, c in choices.items():
            out.print(f"[bold]{name}[/bold]")
            render.lines(out, [f"  • {reason}" for reason in c.reasons])

    @app.command()
    def up(
        name: Annotated[str, typer.Argument(help="Deployment name; nodes are NAME-1 … NAME-N.")],
        count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000)] = 1,
        site: SiteOpt = None,
        cpus: CpusOpt = 1,
        memory: MemOpt = 0.5,
        os_: OsOpt = "ubuntu-24.04",
        sites_file: SitesOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Allocate SSH-ready, root-secured nodes (the eight steps, durable)."""
        if not all(c.isalnum() or c == "-" for c in name) or not name[:1].isalpha():
            raise InterlockError(
                "NAME: letters, digits and dashes, starting with a letter", ExitCode.BAD_INPUT
            )
        e = deploy.open_engine(sites_file)
        names, traits = _site_list(e, site), _traits(cpus, memory, os_)
        nodes = _live(e, lambda p: deploy.up(e, name, count, names, traits, p), as_json)
        _report(nodes, as_json)

    @app.command()
    def resume(sites_file: SitesOpt = None, as_json: JsonOpt = False) -> None:
        """Finish allocations that an interrupted `interlock up` left running."""
        e = deploy.open_engine(sites_file)
        nodes = _live(e, lambda p: deploy.resume(e, p), as_json)
        _report(nodes, as_json)

    @app.command("ls")
    def ls_(sites_file: SitesOpt = None, as_json: JsonOpt = False) -> None:
        """List nodes."""
        e = deploy.open_engine(sites_file)
        nodes = e.store.nodes()
        if as_json:
            print(json.dumps([n.model_dump(exclude={"traits"}) for n in nodes], indent=2))
        else:
            render.nodes(out, nodes)

    @app.command()
    def ssh(
        name: str,
        command: Annotated[
            list[str] | None, typer.Argument(help="Command to run instead of a shell.")
        ] = None,
        sites_file: SitesOpt = None,
    ) -> None:
        """Log in to a node as root with the platform key."""
        e = deploy.open_engine(sites_file)
        node = e.store.get(name)
        if node is None or node.status != "ready" or not node.public_ip or not node.host_key:
            raise InterlockError(
                f"no ready node {name!r} (see `interlock ls`)", ExitCode.NOT_RUNNING
            )
        known = _known_hosts(e, [n for n in e.store.nodes() if n.status == "ready"])
        args = [
            "ssh", "-i", str(e.platform[0]), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "LogLevel=ERROR", f"root@{node.public_ip}", *(command or []),
        ]  # fmt: skip
        ssh_bin = shutil.which("ssh")
        if ssh_bin is None:
            raise InterlockError("ssh (openssh-client) is not installed", ExitCode.ENVIRONMENT)
        os.execv(ssh_bin, args)

    @app.command("ssh-config")
    def ssh_config(sites_file: SitesOpt = None) -> None:
        """Print an include file for ~/.ssh/config with every ready node."""
        e = deploy.open_engine(sites_file)
        nodes = [n for n in e.store.nodes() if n.status == "ready" and n.public_ip]
        known = _known_hosts(e, nodes)
        for n in nodes:
            print(
                f"Host {n.name}\n  HostName {n.public_ip}\n  User root\n"
                f"  IdentityFile {e.platform[0]}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n"
            )

    @app.command()
    def inventory(
        list_: Annotated[
            bool, typer.Option("--list", help="Ansible's dynamic-inventory call.")
        ] = True,
        host: Annotated[str | None, typer.Option("--host")] = None,
        sites_file: SitesOpt = None,
    ) -> None:
        """Ansible dynamic-inventory JSON of every ready node."""
        e = deploy.open_engine(sites_file)
        nodes = [n for n in e.store.nodes() if n.status == "ready" and n.public_ip]
        known = _known_hosts(e, nodes)
        hostvars = {
            n.name: {
                "ansible_host": n.public_ip,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(e.platform[0]),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"
                ),
                "interlock_site": n.site,
                "interlock_deployment": n.deployment,
            }
            for n in nodes
        }
        if host is not None:
            print(json.dumps(hostvars.get(host, {})))
            return
        groups: dict[str, Any] = {}
        for n in nodes:
            groups.setdefault(n.deployment, {"hosts": []})["hosts"].append(n.name)
            groups.setdefault(f"site_{n.site}", {"hosts": []})["hosts"].append(n.name)
        print(
            json.dumps(
                {"all": {"children": sorted(groups)}, **groups, "_meta": {"hostvars": hostvars}},
                indent=2,
            )
        )

    @app.command()
    def down(
        name: Annotated[str | None, typer.Argument(help="Deployment to release.")] = None,
        all_: Annotated[bool, typer.Option("--all", help="Release every node.")] = False,
        sites_file: SitesOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Release nodes: servers, floating IPs, keys."""
        if (name is None) == (not all_):
            raise InterlockError("give a deployment NAME or --all (not both)", ExitCode.BAD_INPUT)
        e = deploy.open_engine(sites_file)
        released = _run(deploy.down(e, None if all_ else name))
        if as_json:
            print(json.dumps({"released": released}))
        else:
            out.print(f"released {len(released)} node(s)")


def _live(e: Engine, start: Any, as_json: bool) -> list[NodeRecord]:
    async def go() -> list[NodeRecord]:
        if as_json or not out.is_terminal:
            seen: dict[str, str] = {}

            def log(nodes: list[NodeRecord]) -> None:
                for n in nodes:
                    state = f"{n.status}:{n.step}"
                    if seen.get(n.name) != state and not as_json:
                        err.print(
                            f"{n.name} [{n.site or '-'}] {n.status} {n.step}",
                            highlight=False,
                            markup=False,  # "[aws]" is the site, not a rich style
                        )
                    seen[n.name] = state

            return list(await _with_workflows(e, start(log)))
        with Live(render.node_table([]), console=out, refresh_per_second=8) as live:
            update = start(lambda n: live.update(render.node_table(n)))
            return list(await _with_workflows(e, update))

    return _run(go())


def _report(nodes: list[NodeRecord], as_json: bool) -> None:
    if as_json:
        print(json.dumps([n.model_dump(exclude={"traits"}) for n in nodes], indent=2))
    else:
        render.nodes(out, nodes, "result")
    if any(n.status != "ready" for n in nodes):
        raise typer.Exit(ExitCode.FAILURE)


def _known_hosts(e: Engine, nodes: list[NodeRecord]) -> Path:
    """interlock's known_hosts: the host keys step 7 saw on each ready node."""
    path = e.home / "known_hosts"
    path.write_text("".join(f"{n.public_ip} {n.host_key}\n" for n in nodes if n.host_key))
    return path
