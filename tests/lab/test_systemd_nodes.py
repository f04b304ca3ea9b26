"""Nodes whose image boots systemd behave as cloud VMs: systemd is PID 1, interlock secures
them, Docker is installed but off until a role enables it, sshd restarts keep the node, and
stopping a node (or the lab) leaves no process, mount or cgroup directory behind.

This module runs a lab of its own (the built-in aws site, and a site of quirky systemd
images), so it can check what that lab leaves on the machine once it is down."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from interlock_lab import image, labdir
from interlock_lab.client import LabClient, resolve_sites
from interlock_lab.node import cgroups
from interlock_lab.sitefile import builtin_sites
from tests.lab.conftest import (
    Cli,
    Lab,
    lab_cli,
    running_lab,
    ssh_ready,
    ssh_run,
    wait_for,
)

SITE = """\
name: sdquirks
kind: aws
region: eu-west-1
public: {pool: 127.131.0.0/24, ports: [22]}
firewall: {default_group: open}
networks: [{name: vpc, cidr: 172.31.0.0/16, public: true}]
defaults: {login_user: cloud-user, init: systemd}
images:
  # A slow first boot: sshd starts a second late, the key lands two seconds after sshd
  # answers, boot-finished never comes, sudo asks for a password, password logins on.
  - {id: ami-0000000000000000a, name: slow-debian-12, os: debian, version: "12",
     login_user: admin, boot_delay: 1, key_delay: 2, post_provisioning: incomplete,
     sudo: password, password_auth: true}
  - {id: ami-0000000000000000b, name: ubuntu-24.04, os: ubuntu, version: "24.04",
     login_user: ubuntu}
"""


@pytest.fixture(scope="module")
def sd_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    site = tmp_path_factory.mktemp("sd") / "sdquirks.yaml"
    site.write_text(SITE)
    with running_lab("systemd", [builtin_sites()["aws"], site]) as client:
        root = client.root
        yield Lab(client)
    # running_lab proved no process and no file is left; nor is a cgroup.
    assert not labdir.leftover_cgroups(root)
    lab = cgroups.lab_cgroup(root)
    assert lab is not None and not lab.exists()


@pytest.fixture(scope="module")
def secured(
    sd_lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cli, dict[str, Any]]]:
    """One node from `interlock up` on the aws site's Ubuntu 24.04 image (systemd)."""
    with lab_cli(sd_lab.state, tmp_path_factory.mktemp("home")) as cli:
        nodes = cli.json("up", "sd", "--site", "aws", "--os", "ubuntu-24.04")
        assert [n["status"] for n in nodes] == ["ready"], nodes
        yield cli, nodes[0]


def lab_node(lab: Lab, public_ip: str) -> dict[str, Any]:
    return next(n for n in lab.client.nodes() if public_ip in n["public_ips"])


def root_key(cli: Cli) -> asyncssh.SSHKey:
    return asyncssh.import_private_key((cli.home / "platform_ed25519").read_text())


def on(cli: Cli, node: dict[str, Any], command: str, timeout: float = 60.0) -> str:
    """Run `command` on the node as root (the platform key); its output, or fail."""
    done = ssh_run(node["public_ip"], "root", root_key(cli), command, timeout=timeout)
    assert done.exit_status == 0, f"{command}: {done.exit_status}\n{done.stdout!s}{done.stderr!s}"
    return str(done.stdout)


def upload(cli: Cli, node: dict[str, Any], local: Path, remote: str) -> None:
    async def go() -> None:
        async with asyncssh.connect(
            node["public_ip"], username="root", client_keys=[root_key(cli)], known_hosts=None
        ) as conn:
            await asyncssh.scp(str(local), (conn, remote))

    asyncio.run(go())


def password_refused(ip: str, user: str) -> bool:
    async def attempt() -> bool:
        try:
            async with asyncssh.connect(
                ip, username=user, password="not-a-password", known_hosts=None,
                client_keys=None, agent_path=None, preferred_auth="password",
            ):  # fmt: skip
                return False
        except asyncssh.PermissionDenied:
            return True

    return asyncio.run(attempt())


def test_a_systemd_node_boots_to_running_and_interlock_secures_it(
    sd_lab: Lab, secured: tuple[Cli, dict[str, Any]]
) -> None:
    cli, node = secured
    assert on(cli, node, "cat /proc/1/comm").strip() == "systemd"
    # --wait: until the boot has finished (no sleeping here).
    state = ssh_run(node["public_ip"], "root", root_key(cli), "systemctl is-system-running --wait")
    failed = on(cli, node, "systemctl --failed --no-legend --plain")
    assert str(state.stdout).strip() == "running", failed
    # Root by the platform key only (step 7), password logins off.
    keys = on(cli, node, "cat /root/.ssh/authorized_keys").split("\n")
    platform = root_key(cli).export_public_key().decode().split()[1]
    assert [k for k in keys if k.strip()] and all(platform in k for k in keys if k.strip())
    assert "passwordauthentication no" in on(cli, node, "sshd -T").lower()
    assert password_refused(node["public_ip"], "root")
    # A fresh VM: the first boot ran (cloud-init's boot-finished), the host's services
    # are not running here, Docker is installed but off.
    on(cli, node, "test -s /var/lib/cloud/instance/boot-finished")
    assert on(cli, node, "hostname").strip().startswith("ip-172-31-")
    units = "mariadb rabbitmq-server postgresql epmd.socket docker containerd"
    active = ssh_run(node["public_ip"], "root", root_key(cli), f"systemctl is-active {units}")
    assert set(str(active.stdout).split()) == {"inactive"}
    enabled = ssh_run(node["public_ip"], "root", root_key(cli), "systemctl is-enabled docker")
    assert str(enabled.stdout).strip() == "disabled"
    assert on(cli, node, "dpkg-query -W -f '${Status}' docker.io") == "install ok installed"
    # Its own cgroup, under the lab's; sysctls read-only but the network's.
    cgroup = on(cli, node, "cat /proc/self/cgroup").splitlines()
    assert "0::/system.slice/ssh.service" in cgroup, cgroup
    on(cli, node, "! sh -c 'echo x > /proc/sys/kernel/domainname' 2>/dev/null")
    on(cli, node, "cat /proc/sys/net/ipv4/ip_forward > /proc/sys/net/ipv4/ip_forward")
    lab_cg = cgroups.lab_cgroup(sd_lab.client.root)
    assert lab_cg is not None
    assert (lab_cg / lab_node(sd_lab, node["public_ip"])["id"] / "init.scope").is_dir()


def test_docker_enabled_by_a_role_loads_and_runs_the_lab_image(
    sd_lab: Lab, secured: tuple[Cli, dict[str, Any]], tmp_path: Path
) -> None:
    cli, node = secured
    archive = tmp_path / "busybox.tar"
    made = subprocess.run(
        [sys.executable, "-m", "interlock", "lab", "image", "--out", str(archive), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(made.stdout)["tag"] == image.TAG
    upload(cli, node, archive, "/root/busybox.tar")
    host_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    on(cli, node, "systemctl enable --now docker", timeout=120)
    assert "overlay2" in on(cli, node, "docker info --format '{{.Driver}}'")
    assert image.TAG in on(cli, node, "docker load -i /root/busybox.tar")
    assert on(cli, node, f"docker run --rm {image.TAG} /bin/busybox echo ok").strip() == "ok"
    # The image's own command: httpd answers on port 80.
    on(cli, node, f"docker run -d --name web -p 8080:80 {image.TAG}")

    def page() -> str:
        got = ssh_run(node["public_ip"], "root", root_key(cli), "wget -qO- http://127.0.0.1:8080/")
        return str(got.stdout)

    wait_for("the container's httpd", lambda: "interlock-lab/busybox" in page())
    on(cli, node, "docker rm -f web")
    # dockerd stayed in the node: the host's forwarding is as it was, no dockerd here.
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forward
    host_net = Path("/proc/self/ns/net").stat().st_ino
    for proc in Path("/proc").iterdir():
        try:
            if (proc / "comm").read_text().strip() == "dockerd":
                assert (proc / "ns" / "net").stat().st_ino != host_net
        except OSError:
            continue


def test_sshd_reload_and_restart_keep_the_node(
    sd_lab: Lab, secured: tuple[Cli, dict[str, Any]]
) -> None:
    cli, node = secured
    init_pid = lab_node(sd_lab, node["public_ip"])["init_pid"]
    # Step 7 reloaded sshd with SIGHUP (interlock.ssh.access): same daemon, no restart.
    shown = on(cli, node, "systemctl show ssh -p ActiveState -p NRestarts")
    assert sorted(shown.split()) == ["ActiveState=active", "NRestarts=0"], shown
    old = on(cli, node, "cat /run/sshd.pid").strip()
    on(cli, node, "systemctl restart ssh")

    def restarted() -> bool:
        try:
            new = on(cli, node, "cat /run/sshd.pid").strip()
        except (OSError, asyncssh.Error, AssertionError):
            return False
        return bool(new) and new != old

    wait_for("sshd to come back", restarted)
    assert on(cli, node, "systemctl is-active ssh").strip() == "active"
    assert lab_node(sd_lab, node["public_ip"])["init_pid"] == init_pid


def test_first_boot_behaviours_hold_under_systemd(sd_lab: Lab) -> None:
    ec2 = sd_lab.ec2("sdquirks")
    pair = ec2.create_key_pair(KeyName="sd-slow", KeyType="ed25519")
    key = asyncssh.import_private_key(pair["KeyMaterial"])
    inst = ec2.run_instances(
        ImageId="ami-0000000000000000a", MinCount=1, MaxCount=1, KeyName="sd-slow"
    )["Instances"][0]
    try:
        ip = ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0][
            "Instances"
        ][0]["PublicIpAddress"]
        ssh_ready(ip)

        def logged_in() -> Any:
            try:
                done = ssh_run(ip, "admin", key, "systemctl is-system-running --wait")
            except (OSError, asyncssh.Error):
                return None
            return done

        done = wait_for("the late key", logged_in)
        assert str(done.stdout).strip() == "running"
        checks = (
            "test ! -e /var/lib/cloud/instance/boot-finished && echo unfinished; "
            "sudo -n true 2>/dev/null || echo sudo-asks; "
            "grep -h PasswordAuthentication /etc/ssh/sshd_config.d/*.conf; "
            "systemctl show interlock-boot-delay -p ActiveState"
        )
        out = str(ssh_run(ip, "admin", key, checks).stdout).split("\n")
        assert out[:4] == [
            "unfinished",
            "sudo-asks",
            "PasswordAuthentication yes",
            "ActiveState=active",
        ], out
    finally:
        ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
        ec2.delete_key_pair(KeyName="sd-slow")


def test_down_of_a_node_leaves_no_process_mount_or_cgroup(
    sd_lab: Lab, secured: tuple[Cli, dict[str, Any]]
) -> None:
    cli, node = secured
    info = lab_node(sd_lab, node["public_ip"])
    lab_cg = cgroups.lab_cgroup(sd_lab.client.root)
    assert lab_cg is not None
    mine = lab_cg / info["id"]
    pids = cgroups.processes(mine)
    assert info["init_pid"] in pids and len(pids) > 3  # systemd, journald, sshd, dockerd...
    cli("down", "sd")
    assert labdir.wait_gone([*pids, info["pid"]], timeout=30) == []
    assert not mine.exists()
    node_dir = info["dir"]
    mounts = Path("/proc/self/mountinfo").read_text()
    assert node_dir not in mounts
    assert not [n for n in sd_lab.client.nodes() if n["id"] == info["id"]]
    # The address no longer answers.
    ip = ipaddress.IPv4Address(node["public_ip"])
    assert not [n for n in sd_lab.client.nodes() if str(ip) in n["public_ips"]]


def test_a_killed_lab_takes_its_systemd_nodes_with_it_and_down_removes_their_cgroups(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")
    (tmp_path / "sdquirks.yaml").write_text(SITE)
    root = Path("/var/tmp") / f"interlock-test-sdkill-{os.getpid()}"
    client = LabClient(root)
    client.up(resolve_sites([], [tmp_path / "sdquirks.yaml"]))
    try:
        ec2 = Lab(client).ec2("sdquirks")
        out = ec2.run_instances(ImageId="ami-0000000000000000b", MinCount=2, MaxCount=2)
        for inst in out["Instances"]:
            ssh_ready(inst["PublicIpAddress"])
        pid = labdir.lab_pid(root)
        assert pid is not None
        pids = labdir.leftover_processes(root)  # the lab's, and every process of its nodes
        assert len(labdir.leftover_cgroups(root)) > 2 and len(pids) > 2 * 5
        os.kill(pid, signal.SIGKILL)
        # The kernel ends the nodes (parent-death signals, then their pid namespaces).
        assert labdir.wait_gone(pids, timeout=30) == []
        assert not labdir.leftover_processes(root)
        assert labdir.leftover_cgroups(root)  # directories are what a crash leaves ...
    finally:
        client.down()
    assert not labdir.leftover_cgroups(root)  # ... and down removes them
    assert not root.exists()
