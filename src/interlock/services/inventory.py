"""What other tools need to reach ready nodes as root: a known_hosts file (the host keys
step 7 saw), an ssh_config include, Ansible's dynamic inventory, an ssh command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.engine import Engine
from interlock.state import NodeRecord


def ready(e: Engine) -> list[NodeRecord]:
    return [n for n in e.store.nodes() if n.status == "ready" and n.public_ip]


def known_hosts(e: Engine, nodes: list[NodeRecord]) -> Path:
    """interlock's known_hosts: the host keys step 7 saw on each ready node."""
    path = e.home / "known_hosts"
    path.write_text("".join(f"{n.public_ip} {n.host_key}\n" for n in nodes if n.host_key))
    return path


def ssh_command(e: Engine, node: NodeRecord, command: list[str]) -> list[str]:
    """ssh's argument list to log in to `node` as root with the platform key."""
    known = known_hosts(e, ready(e))
    return [
        "ssh", "-i", str(e.platform[0]), "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
        "-o", "LogLevel=ERROR", f"root@{node.public_ip}", *command,
    ]  # fmt: skip


def ssh_config(e: Engine) -> str:
    """An include file for ~/.ssh/config with every ready node."""
    nodes = ready(e)
    known = known_hosts(e, nodes)
    return "".join(
        f"Host {n.name}\n  HostName {n.public_ip}\n  User root\n"
        f"  IdentityFile {e.platform[0]}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n\n"
        for n in nodes
    )


def ansible(e: Engine, host: str | None = None) -> dict[str, Any]:
    """Ansible's dynamic inventory of every ready node (or one host's variables)."""
    nodes = ready(e)
    known = known_hosts(e, nodes)
    common = f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"
    hostvars = {
        n.name: {
            "ansible_host": n.public_ip,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(e.platform[0]),
            "ansible_ssh_common_args": common,
            "interlock_site": n.site,
            "interlock_deployment": n.deployment,
        }
        for n in nodes
    }
    if host is not None:
        return hostvars.get(host, {})
    groups: dict[str, Any] = {}
    for n in nodes:
        groups.setdefault(n.deployment, {"hosts": []})["hosts"].append(n.name)
        groups.setdefault(f"site_{n.site}", {"hosts": []})["hosts"].append(n.name)
    return {"all": {"children": sorted(groups)}, **groups, "_meta": {"hostvars": hostvars}}
