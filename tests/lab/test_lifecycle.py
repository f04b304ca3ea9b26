"""Down and crash leave nothing behind; bad site files start nothing; faults fire."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from interlock_lab import labdir
from interlock_lab.client import LabClient, resolve_sites
from tests.lab.conftest import ssh_ready

SITE = """\
name: {name}
kind: aws
region: us-east-1
public: {{pool: {pool}, ports: [22]}}
networks: [{{name: vpc, cidr: 172.31.0.0/16, public: true}}]
images:
  - {{id: ami-0e2c8caa4b6378d8c, name: ubuntu-24.04, os: ubuntu, version: "24.04",
     login_user: ubuntu}}
faults: {faults}
firewall: {{default_group: open}}   # these tests are about the lab's lifecycle
"""


@pytest.fixture
def small_lab(tmp_path: Path) -> Iterator[LabClient]:
    (tmp_path / "small.yaml").write_text(
        SITE.format(name="small", pool="127.120.0.0/24", faults=[])
    )
    faults = "[{action: RunInstances, error: InsufficientInstanceCapacity, rate: 1.0, status: 500}]"
    (tmp_path / "faulty.yaml").write_text(
        SITE.format(name="faulty", pool="127.121.0.0/24", faults=faults)
    )
    root = Path("/var/tmp") / f"interlock-small-lab-{os.getpid()}"
    client = LabClient(root)
    client.up(resolve_sites([], [tmp_path / "small.yaml", tmp_path / "faulty.yaml"]))
    try:
        yield client
    finally:
        client.down()


def ec2(client: LabClient, site: str) -> object:
    info = client.status()["sites"][site]
    return boto3.client(
        "ec2",
        endpoint_url=info["endpoint"],
        region_name=info["region"],
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}),
    )


def launch(client: LabClient, count: int) -> list[str]:
    api = ec2(client, "small")
    out = api.run_instances(  # type: ignore[attr-defined]
        ImageId="ami-0e2c8caa4b6378d8c", MinCount=count, MaxCount=count
    )
    addrs = [i["PublicIpAddress"] for i in out["Instances"]]
    for a in addrs:
        ssh_ready(a)
    return list(addrs)


def refused(address: str) -> bool:
    try:
        asyncio.run(asyncio.open_connection(address, 22))
    except OSError:
        return True
    return False


def mounts_under(root: Path) -> list[str]:
    return [m for m in Path("/proc/self/mountinfo").read_text().splitlines() if str(root) in m]


def test_down_leaves_no_process_mount_address_or_file(small_lab: LabClient) -> None:
    addresses = launch(small_lab, 3)
    root = small_lab.root
    # unshare and init of each node carry the mark (sshd clears its environment)
    assert len(labdir.leftover_processes(root)) >= 2 * 3
    result = small_lab.down()
    assert result["was_running"] and result["killed"] == []
    assert {e["kind"] for e in result["outstanding"]} == {"server"}
    assert not labdir.leftover_processes(root)
    assert not mounts_under(root)
    assert not root.exists()
    assert all(refused(a) for a in addresses)


def test_a_crashed_lab_takes_its_nodes_with_it_and_restart_cleans_up(
    small_lab: LabClient, tmp_path: Path
) -> None:
    addresses = launch(small_lab, 2)
    root = small_lab.root
    pid = labdir.lab_pid(root)
    assert pid is not None
    node_pids = labdir.leftover_processes(root)
    assert pid in node_pids
    os.kill(pid, signal.SIGKILL)
    assert labdir.wait_gone(node_pids, timeout=30) == []
    assert not labdir.leftover_processes(root)
    assert [a for a in addresses if not refused(a)] == []
    assert (root / "nodes").exists()  # files are what a crash leaves ...
    small_lab.up(resolve_sites([], [tmp_path / "small.yaml"]))
    assert not [n for n in small_lab.nodes()]  # ... and a restart starts clean
    assert not small_lab.ledger(outstanding=True)
    launch(small_lab, 1)


def test_injected_fault_reaches_the_client_and_creates_nothing(small_lab: LabClient) -> None:
    api = ec2(small_lab, "faulty")
    with pytest.raises(ClientError) as e:
        api.run_instances(ImageId="ami-0e2c8caa4b6378d8c", MinCount=1, MaxCount=1)  # type: ignore[attr-defined]
    assert e.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert not small_lab.ledger("faulty")
    assert not [n for n in small_lab.nodes() if n["site"] == "faulty"]


def test_bad_site_file_is_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SITE.format(name="bad", pool="10.0.0.0/24", faults=[]))
    root = tmp_path / "never"
    done = subprocess.run(
        [sys.executable, "-m", "interlock", "lab", "up", "--site-file", str(bad)],
        capture_output=True,
        text=True,
        env={**os.environ, "INTERLOCK_LAB_DIR": str(root)},
    )
    assert done.returncode == 2
    assert f"{bad} (line 4): field 'public.pool'" in done.stderr
    assert "127.0.0.0/8" in done.stderr
    assert not root.exists()
