"""Firewalls as the clouds have them: the lab admits a connection to a public address only
where the node's security groups allow it (changes apply live), and interlock opens SSH,
from the operator's address only, where a site blocks it, and gives the group back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.lab.conftest import (
    FROM_HOST,
    Cli,
    Lab,
    answers_ssh,
    host_admitted,
    outstanding,
    ssh_ready,
    wait_for,
)

UBUNTU_2404 = "ami-0e2c8caa4b6378d8c"
FIREWALL = ("security-group", "security-group-rule")


def groups_of(ec2: Any, instance: str) -> list[str]:
    inst = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    return [g["GroupId"] for g in inst["NetworkInterfaces"][0]["Groups"]]


def test_a_node_is_reachable_on_ssh_only_while_a_group_admits_it(lab: Lab) -> None:
    ec2 = lab.ec2()
    with host_admitted(ec2) as group:
        inst = ec2.run_instances(
            ImageId=UBUNTU_2404, InstanceType="t3.micro", MinCount=1, MaxCount=1
        )["Instances"][0]
        iid = inst["InstanceId"]
        try:
            public = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
                "PublicIpAddress"
            ]
            default = groups_of(ec2, iid)
            # The default group admits only its own members: nothing from the host.
            assert not answers_ssh(public)
            ec2.modify_instance_attribute(InstanceId=iid, Groups=[*default, group])
            ssh_ready(public)
            # Taken away again, live: the node is up, and still unreachable.
            ec2.modify_instance_attribute(InstanceId=iid, Groups=default)
            assert not answers_ssh(public)
            ec2.modify_instance_attribute(InstanceId=iid, Groups=[*default, group])
            assert answers_ssh(public)
            # A rule revoked is gone at once too.
            ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[FROM_HOST])
            assert not answers_ssh(public)
        finally:
            ec2.terminate_instances(InstanceIds=[iid])


@pytest.fixture
def sites_with_sources(lab: Lab, tmp_path: Path) -> Path:
    """The lab's sites file, with the aws site's SSH allowed from two sources."""
    sources = ["127.0.0.1/32", "127.0.0.5/32"]
    return lab.sites_with(tmp_path / "sites.yaml", aws={"ssh_from": sources})


def test_interlock_opens_ssh_from_the_configured_sources_only_and_gives_it_back(
    lab: Lab, sites_with_sources: Path, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "home", sites_with_sources)
    before = [e for e in outstanding(lab, "aws") if e["kind"] in FIREWALL]
    try:
        nodes = cli.json("up", "fw", "--count", "2", "--site", "aws")
        assert [n["status"] for n in nodes] == ["ready", "ready"], nodes
        for n in nodes:
            assert (
                "firewall: security group allowing SSH from 127.0.0.1/32, 127.0.0.5/32 "
                "created" in n["fixups"]
            ), n["fixups"]
        made = [e for e in outstanding(lab, "aws") if e["kind"] in FIREWALL and e not in before]
        # One group for the deployment, both nodes in it: SSH from each source, and all
        # traffic between its own members.
        assert sorted(e["kind"] for e in made) == ["security-group", *["security-group-rule"] * 3]
        ip = nodes[0]["public_ip"]
        assert answers_ssh(ip, "127.0.0.1") and answers_ssh(ip, "127.0.0.5")
        assert not answers_ssh(ip, "127.0.0.2")  # any other source is refused
    finally:
        cli("down", "fw", check=False)
    after = [e for e in outstanding(lab, "aws") if e["kind"] in FIREWALL]
    assert after == before


def test_a_site_open_by_default_needs_no_group(lab: Lab, cli: Cli) -> None:
    (node,) = cli.json("up", "open", "--site", "userquirks")
    try:
        assert node["status"] == "ready", node
        assert not [f for f in node["fixups"] if "security group" in f]
        assert not [e for e in outstanding(lab, "userquirks") if e["kind"] in FIREWALL]
    finally:
        cli("down", "open")
    wait_for("no node left", lambda: not outstanding(lab, "userquirks"))
