"""Host isolation and reachability: what a node does stays in the node."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.lab.conftest import Lab, ssh_ready, ssh_run, wait_for

ROOT_IMAGE = "ami-00000000000000008"


@pytest.fixture(scope="module")
def root_node(lab: Lab) -> Iterator[tuple[str, asyncssh.SSHKey, dict[str, Any]]]:
    ec2 = lab.ec2("quirks")
    pair = ec2.create_key_pair(KeyName="isolation", KeyType="ed25519")
    inst = ec2.run_instances(
        ImageId=ROOT_IMAGE, InstanceType="t3.micro", MinCount=1, MaxCount=1, KeyName="isolation"
    )["Instances"][0]
    desc = ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]["Instances"][
        0
    ]
    ssh_ready(desc["PublicIpAddress"])
    yield desc["PublicIpAddress"], asyncssh.import_private_key(pair["KeyMaterial"]), desc
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    ec2.delete_key_pair(KeyName="isolation")


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_changes_inside_a_node_leave_the_host_alone(
    lab: Lab, root_node: tuple[str, asyncssh.SSHKey, dict[str, Any]]
) -> None:
    ip, key, _ = root_node
    before = {p: digest(p) for p in ("/etc/passwd", "/etc/shadow", "/etc/ssh/sshd_config")}
    done = ssh_run(
        ip,
        "root",
        key,
        "useradd -m intruder && echo 'PermitRootLogin yes' >> /etc/ssh/sshd_config "
        "&& echo x > /root/planted && echo x > /etc/planted && hostname",
    )
    assert done.exit_status == 0, done.stderr
    assert {p: digest(p) for p in before} == before
    assert not Path("/root/planted").exists()
    assert not Path("/etc/planted").exists()
    assert "intruder" not in Path("/etc/passwd").read_text()
    assert (
        subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
        != str(done.stdout).strip()
    )


def test_a_node_sees_neither_the_hosts_secrets_nor_the_lab(
    lab: Lab, root_node: tuple[str, asyncssh.SSHKey, dict[str, Any]]
) -> None:
    ip, key, _ = root_node
    lab_dir = lab.state["dir"]
    api_port = lab.state["api"].rsplit(":", 1)[1]
    done = ssh_run(
        ip,
        "root",
        key,
        f"ls -A /root; test -e {lab_dir}/ledger.db && echo LAB-VISIBLE; "
        f"(exec 3<>/dev/tcp/127.0.0.1/{api_port}) 2>/dev/null && echo API-REACHABLE; true",
    )
    seen = str(done.stdout).split()
    assert "LAB-VISIBLE" not in seen and "API-REACHABLE" not in seen
    host_root = set(os.listdir("/root")) - {".ssh", "planted"}
    assert host_root, "the host's /root should have something to hide"
    assert not host_root & set(seen)


def test_sshd_reload_and_restart_do_not_end_the_node(
    lab: Lab, root_node: tuple[str, asyncssh.SSHKey, dict[str, Any]]
) -> None:
    ip, key, desc = root_node
    init_pid = lab.node(desc["InstanceId"])["init_pid"]
    assert ssh_run(ip, "root", key, "kill -HUP $(cat /run/sshd.pid)").exit_status == 0
    ssh_ready(ip)
    old = str(ssh_run(ip, "root", key, "cat /run/sshd.pid").stdout).strip()
    ssh_run(ip, "root", key, "kill $(cat /run/sshd.pid)")

    def restarted() -> bool:
        try:
            new = str(ssh_run(ip, "root", key, "cat /run/sshd.pid").stdout).strip()
        except (OSError, asyncssh.Error):
            return False
        return bool(new) and new != old

    wait_for("sshd to come back", restarted)
    assert lab.node(desc["InstanceId"])["init_pid"] == init_pid


def test_private_networks_are_not_on_the_host(lab: Lab) -> None:
    host = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True).stdout)
    host_addrs = [
        ipaddress.IPv4Address(a["local"])
        for link in host
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    ]
    private = [ipaddress.IPv4Address(n["private_ip"]) for n in lab.client.nodes()]
    assert private, "expected running nodes"
    lab_nets = [ipaddress.IPv4Network("172.31.0.0/16"), ipaddress.IPv4Network("10.20.0.0/24")]
    assert not [a for a in host_addrs if any(a in n for n in lab_nets)]
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    assert "172.31." not in routes and "10.20.0." not in routes
