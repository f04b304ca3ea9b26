"""Labs live beside each other, and reap what their services orphan."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from interlock_lab.sitefile import builtin_sites
from tests.lab.conftest import Cli, lab_cli, running_lab, wait_for
from tests.openstack.conftest import OsLab


def pool(state: dict[str, Any], site: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(state["sites"][site]["public_pool"])


def test_two_labs_with_openstack_run_side_by_side(oslab: OsLab, oscli: Cli, tmp_path: Path) -> None:
    # A second lab with one of the same clouds while the suite's lab runs: its OpenStack,
    # epmd and pools get addresses of their own, and both labs' nodes come up secured.
    with running_lab("second", [builtin_sites()["os-tenant"]]) as second:
        other, mine = second.status(), oslab.client.status()
        assert other["addresses"]["services"] != mine["addresses"]["services"]
        assert other["addresses"]["epmd_port"] != mine["addresses"]["epmd_port"]
        assert not pool(other, "os-tenant").overlaps(pool(mine, "os-tenant"))
        with lab_cli(other, tmp_path / "second") as cli2:
            (theirs,) = cli2.json("up", "side", "--site", "os-tenant")
            (ours,) = oscli.json("up", "side", "--site", "os-tenant")
            assert theirs["status"] == ours["status"] == "ready", (theirs, ours)
            assert ipaddress.IPv4Address(theirs["public_ip"]) in pool(other, "os-tenant")
            assert ipaddress.IPv4Address(ours["public_ip"]) in pool(mine, "os-tenant")
            assert cli2("ssh", "side-1", "--", "hostname").stdout.strip()
            assert oscli("ssh", "side-1", "--", "hostname").stdout.strip()
    # The second lab is gone, and took nothing of ours with it.
    assert oscli("ssh", "side-1", "--", "true").returncode == 0
    oscli("down", "side")


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its state letter (Z: a zombie nobody reaped)."""
    parents: dict[int, int] = {}
    states: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            parents[int(proc.name)], states[int(proc.name)] = int(ppid), state
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, p in parents.items():
            if p == parent and child not in found:
                found[child] = states[child]
                frontier.append(child)
    return found


def test_the_lab_reaps_what_its_services_orphan(oslab: OsLab, oscli: Cli) -> None:
    # RabbitMQ's boot starts an epmd starter whose epmd and DNS helper are orphaned at
    # once (it does again every minute); nova and neutron spawn helpers as servers come and
    # go. Without a reaper they stay <defunct> under the lab for as long as it runs.
    lab_pid = oslab.state["pid"]
    (node,) = oscli.json("up", "reaped", "--site", "os-tenant")
    assert node["status"] == "ready", node
    oscli("down", "reaped")
    assert len(descendants(lab_pid)) > 10  # the OpenStack's services are there to look at

    def no_zombies() -> bool:
        return "Z" not in descendants(lab_pid).values()

    wait_for("no defunct process under the lab", no_zombies, timeout=10)
