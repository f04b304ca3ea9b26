"""`interlock lab …`: run emulated clouds with real sandbox nodes on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from interlock.cli import render

app = typer.Typer(
    help="The lab: emulated clouds (EC2, OpenStack, Redfish metal) backed by real sandbox nodes.",
    no_args_is_help=True,
)
out = render.console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def up(
    sites: Annotated[
        list[str] | None, typer.Argument(help="Built-in sites (default: all).")
    ] = None,
    site_file: Annotated[
        list[Path] | None,
        typer.Option("--site-file", help="Your own site file (repeatable).", exists=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start the lab in the background with the given sites, then show them."""
    from interlock_lab.client import LabClient, resolve_sites

    specs = resolve_sites(sites or [], site_file or [])
    if not as_json:
        render.lines(out, [f"starting lab sites: {', '.join(s.name for _, s in specs)} …"])
    state = LabClient().up(specs)
    _show(state, as_json)


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Show the running lab: sites, endpoints, nodes, outstanding resources."""
    from interlock_lab.client import LabClient

    _show(LabClient().status(), as_json)


@app.command()
def down(as_json: JsonOpt = False) -> None:
    """Stop the lab: every node ends and every file of the lab goes."""
    from interlock_lab.client import LabClient

    result = LabClient().down()
    if as_json:
        print(json.dumps(result, indent=2))
        return
    if not result["was_running"]:
        out.print("the lab was not running" + (" (cleaned leftovers)" if result["killed"] else ""))
        return
    n = len(result["outstanding"])
    out.print(
        "lab stopped; nothing was outstanding"
        if n == 0
        else f"lab stopped; {n} resource(s) were still outstanding and went with it"
    )


def _show(state: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(state, indent=2))
        return
    columns = ("site", "kind", "endpoint", "public pool", "nodes", "outstanding")
    rows = [
        (name, site["kind"], site.get("endpoint", ""), site["public_pool"], site["nodes"],
         site["outstanding"])
        for name, site in state["sites"].items()
    ]  # fmt: skip
    table = render.plain_table(columns, rows, f"interlock lab — {state['dir']}")
    render.table(out, table)
    moved = [
        f"{name}: public pool {site['public_pool']} (another lab holds {wanted})"
        for name, site in state["sites"].items()
        if (wanted := site.get("public_pool_wanted"))
    ]
    render.lines(out, moved)
    render.lines(
        out, [f"control API: {state['api']}   (interlock lab status --json for credentials)"]
    )
