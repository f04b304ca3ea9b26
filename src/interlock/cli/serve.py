"""`interlock serve`: the HTTP API (and its OpenAPI documentation at /docs)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from interlock.cli import render
from interlock.cli.options import SitesOpt, engine

out = render.console()
err = render.console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless you say so).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8750,
    show_token: Annotated[
        bool, typer.Option("--show-token", help="Print the API's bearer token and exit.")
    ] = False,
    sites_file: SitesOpt = None,
) -> None:
    """Serve interlock's HTTP API over the same services as this command: sites, plan,
    nodes, deployments, roles, conformance. Every call needs the bearer token (made once,
    kept mode 0600 in interlock's home): `interlock serve --show-token`."""
    from interlock.api import token

    secret = token.ensure()
    if show_token:
        print(secret)
        return
    import uvicorn

    from interlock.api.app import create

    engine(sites_file).store.close()  # a bad sites file: its one line, before listening
    try:
        exposed = not ipaddress.ip_address(host).is_loopback
    except ValueError:
        exposed = host != "localhost"
    if exposed:
        err.print(f"warning: listening on {host}, beyond this machine", highlight=False)
    shown = f"[{host}]" if ":" in host else host
    render.lines(out, [
        f"interlock API on http://{shown}:{port}/api/v1  (documentation: /docs)",
        f"token: interlock serve --show-token   (kept in {token.path()}, mode 0600)",
    ])  # fmt: skip
    uvicorn.run(create(sites_file, secret), host=host, port=port, log_level="warning")
