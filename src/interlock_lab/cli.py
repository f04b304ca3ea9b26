"""`interlock lab …`: run emulated clouds with real sandbox nodes on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from interlock.cli import render

app = typer.Typer(
    help="The lab: emulated clouds (EC2, OpenStack, Redfish metal) backed by real sandbox nodes. "
    "Images marked `init: systemd` boot systemd as PID 1, with Docker installed but not "
    "enabled; `interlock lab image` writes a container image to `docker load` on them.",
    no_args_is_help=True,
)
out = render.console()

DEFAULT_ARCHIVE = Path("interlock-lab-busybox.tar")
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


@app.command()
def image(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the archive.")] = (
        DEFAULT_ARCHIVE
    ),
    as_json: JsonOpt = False,
) -> None:
    """Write a `docker load`-able archive of interlock-lab/busybox:1 (no registry needed).

    The image is Debian's static busybox (install busybox-static): /bin/busybox, /bin/sh
    linked to it, and by default `busybox httpd` serving /www on port 80 (a static
    index page; /cgi-bin/hostname answers with the container's hostname). On a lab node
    that boots systemd:
    `systemctl enable --now docker; docker load -i interlock-lab-busybox.tar;
    docker run -d -p 80:80 interlock-lab/busybox:1`.
    Built in Python (docker save format), without dockerd; the same bytes every run."""
    from interlock_lab.image import write_archive

    made = write_archive(out_path.absolute())
    if as_json:
        print(json.dumps({"path": str(made.path), "tag": made.tag, "image_id": made.image_id,
                          "diff_id": made.diff_id, "bytes": made.bytes}, indent=2))  # fmt: skip
        return
    render.lines(out, [f"wrote {made.tag} to {made.path} ({made.bytes} bytes); "
                       f"load it with: docker load -i {made.path}"])  # fmt: skip


@app.command()
def kubernetes(
    cache: Annotated[
        Path | None,
        typer.Option("--cache", help="Cache folder (default /var/cache/interlock/kubernetes)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The Kubernetes binaries lab nodes run (kube-apiserver, kube-controller-manager,
    kube-scheduler, kubelet, kube-proxy, kubectl): from the cache, or built once from
    Debian 12's kubernetes source package with Debian's Go (minutes; nothing from
    upstream). Give the folder to the kubernetes-binaries role as its `binaries`."""
    from interlock_lab import kubernetes as k8s

    if not as_json and k8s.cached(cache or k8s.CACHE) is None:
        render.lines(out, [f"building Kubernetes {k8s.VERSION} from Debian's source (minutes) …"])
    found = k8s.ensure(cache or k8s.CACHE)
    if as_json:
        files = [str(f) for f in found.files]
        print(json.dumps({"version": found.version, "folder": str(found.folder),
                          "files": files, "built": found.built}))  # fmt: skip
        return
    how = "built" if found.built else "cached"
    render.lines(out, [f"Kubernetes {found.version} ({how}): {found.folder}"])


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
