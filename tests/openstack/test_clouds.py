"""interlock against seven OpenStack clouds that differ as real ones do, on a real
OpenStack: every cloud reaches the secured state (or fails over, or fails clearly), and
`interlock down` leaves nothing behind, as the OpenStack API itself shows."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from interlock.config import OpenstackSite
from interlock.providers.openstack import OpenstackProvider
from tests.lab.conftest import Cli
from tests.lab.test_allocate import password_refused
from tests.openstack.conftest import OsLab

NOTHING: dict[str, list[str]] = {
    "servers": [], "keypairs": [], "floating_ips": [], "ports": [], "security_groups": []
}  # fmt: skip


@pytest.mark.parametrize(
    ("site", "os_", "login", "fixed"),
    [
        ("os-aws-like", "ubuntu-24.04", "ubuntu", {"firewall", "root_access"}),
        ("os-tenant", "centos-9", "centos", {"public_address", "firewall", "root_access"}),
        ("os-misnamed", "ubuntu-24.04", "ubuntu", {"selection", "firewall", "root_access"}),
        ("os-unlabelled", "ubuntu-24.04", "ubuntu",
         {"selection", "public_address", "firewall", "root_access"}),
        ("os-logins", "rhel-9", "cloud-user", {"firewall", "login", "root_access"}),
        ("os-logins", "ubuntu-22.04", "dhc-user", {"firewall", "login", "root_access"}),
        ("os-halfdone", "ubuntu-24.04", "ubuntu", {"root_access"}),
    ],
)  # fmt: skip
def test_each_cloud_reaches_the_secured_state_and_down_leaves_nothing(
    oslab: OsLab, oscli: Cli, site: str, os_: str, login: str, fixed: set[str]
) -> None:
    (node,) = oscli.json("up", "n", "--site", site, "--os", os_, "--cpus", "2", "--memory", "4")
    assert (node["status"], node["login_user"]) == ("ready", login), node
    assert ipaddress.IPv4Address(node["public_ip"]) in oslab.pool(site)
    # Exactly the steps that needed interlock's help on this cloud (its ground truth).
    assert {f.split(":", 1)[0] for f in node["fixups"]} == fixed, node["fixups"]
    shown = oscli("ssh", node["name"], "--", "id -u; cat /root/.ssh/authorized_keys").stdout
    assert shown.split("\n")[0] == "0" and "interlock:" not in shown  # no node key left
    assert password_refused(node["public_ip"])
    assert not oslab.conn(site).compute.find_keypair(f"interlock-{node['name']}")
    oscli("down", "n")
    assert oslab.leftovers(site) == NOTHING


def test_network_roles_come_from_the_api_not_from_names(oslab: OsLab, oscli: Cli) -> None:
    choice = oscli.json("plan", "--site", "os-misnamed")["os-misnamed"]
    assert choice["network"]["name"] == "private" and not choice["needs_floating_ip"]
    sites = yaml.safe_load(Path(oscli.env["INTERLOCK_SITES"]).read_text())["sites"]
    roles = {}
    for name in ("os-misnamed", "os-unlabelled"):
        meta = OpenstackProvider(name, OpenstackSite(**sites[name])).metadata()
        roles[name] = {n.name: (n.role, n.reaches_outside) for n in meta.networks}
    assert roles["os-misnamed"] == {
        "private": ("public", True),  # router:external and shared: boot on it, routable
        "public": ("private", False),  # a tenant network no router takes out
        "external": ("external-unusable", True),  # external, but no router of ours uses it
    }
    assert roles["os-unlabelled"] == {
        "net-b": ("private", True),  # the one a router takes out to net-x
        "net-a": ("private", False),
        "net-c": ("private", False),
        "net-x": ("external-usable", True),
    }


def test_floating_ip_quota_zero_fails_over_or_fails_clearly(oslab: OsLab, oscli: Cli) -> None:
    (node,) = oscli.json("up", "g", "--site", "os-nofloat,os-aws-like")
    assert (node["status"], node["site"]) == ("ready", "os-aws-like")
    first = node["attempts"][0]
    assert first["site"] == "os-nofloat" and "Quota exceeded" in first["why"]
    assert oslab.leftovers("os-nofloat") == NOTHING
    done = oscli("up", "h", "--site", "os-nofloat", "--json", check=False)
    assert done.returncode == 1
    (failed,) = json.loads(done.stdout)
    assert "floatingip" in failed["error"] and "\n" not in failed["error"]
    assert oslab.leftovers("os-nofloat") == NOTHING
