"""Reaching nodes: ssh, ssh-config, inventory."""

from __future__ import annotations

import json
import os
import shutil
from typing import Annotated

import typer

from interlock.cli.options import SitesOpt, engine


def register(app: typer.Typer) -> None:
    app.command()(ssh)
    app.command("ssh-config")(ssh_config)
    app.command()(inventory)


def ssh(
    name: str,
    command: Annotated[
        list[str] | None, typer.Argument(help="Command to run instead of a shell.")
    ] = None,
    sites_file: SitesOpt = None,
) -> None:
    """Log in to a node as root with the platform key."""
    from interlock.errors import ExitCode, InterlockError
    from interlock.services import deploy, inventory

    e = engine(sites_file)
    node = deploy.ready_node(e, name)
    ssh_bin = shutil.which("ssh")
    if ssh_bin is None:
        raise InterlockError("ssh (openssh-client) is not installed", ExitCode.ENVIRONMENT)
    os.execv(ssh_bin, inventory.ssh_command(e, node, command or []))


def ssh_config(sites_file: SitesOpt = None) -> None:
    """Print an include file for ~/.ssh/config with every ready node."""
    from interlock.services import inventory

    print(inventory.ssh_config(engine(sites_file)), end="")


def inventory(
    list_: Annotated[bool, typer.Option("--list", help="Ansible's dynamic-inventory call.")] = True,
    host: Annotated[str | None, typer.Option("--host")] = None,
    sites_file: SitesOpt = None,
) -> None:
    """Ansible dynamic-inventory JSON of every ready node."""
    from interlock.services import inventory as inv

    found = inv.ansible(engine(sites_file), host)
    print(json.dumps(found) if host is not None else json.dumps(found, indent=2))
