"""A lab for the integration tests: built-in sites (on pools of their own) plus
a site of quirky images, in a private lab directory, torn down afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import boto3
import pytest
import yaml

from interlock_lab import labdir
from interlock_lab.client import LabClient, resolve_sites
from interlock_lab.sitefile import builtin_sites

HERE = Path(__file__).parent
# Pools of the test lab: apart from the built-in ones, so a user's lab may run too.
TEST_POOLS = {"aws": "127.110.0.0/16", "metal": "127.112.0.0/24"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


def site_copy(name: str, dest: Path, **changes: Any) -> Path:
    """A built-in site file with its public pool moved (and other changes)."""
    data = yaml.safe_load(builtin_sites()[name].read_text())
    data["public"]["pool"] = TEST_POOLS[name]
    data.update(changes)
    path = dest / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Lab:
    def __init__(self, client: LabClient) -> None:
        self.client = client
        self.state = client.status()

    def ec2(self, site: str = "aws") -> Any:
        info = self.state["sites"][site]
        return boto3.client(
            "ec2",
            endpoint_url=info["endpoint"],
            region_name=info["region"],
            aws_access_key_id=info["aws_access_key_id"],
            aws_secret_access_key=info["aws_secret_access_key"],
        )

    def node(self, node_id: str) -> dict[str, Any]:
        return next(n for n in self.client.nodes() if n["id"] == node_id)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")
    files = tmp_path_factory.mktemp("sites")
    root = Path("/var/tmp") / f"interlock-test-lab-{os.getpid()}"
    client = LabClient(root)
    specs = resolve_sites(
        [],
        [
            site_copy("aws", files),
            site_copy("metal", files),
            HERE / "quirks.yaml",
            HERE / "faulty.yaml",
            HERE / "noeip.yaml",
            HERE / "broken.yaml",
            HERE / "flaky.yaml",
            HERE / "userquirks.yaml",
        ],
    )
    client.up(specs)
    try:
        yield Lab(client)
    finally:
        client.down()
        assert not labdir.leftover_processes(root)
        assert not root.exists()
        shutil.rmtree(root, ignore_errors=True)


def ssh_run(
    host: str,
    user: str,
    key: asyncssh.SSHKey | None,
    command: str,
    password: str | None = None,
    timeout: float = 20.0,
) -> asyncssh.SSHCompletedProcess:
    """Run one command over SSH (asyncssh), checking nothing but that we got in."""

    async def go() -> asyncssh.SSHCompletedProcess:
        async with asyncssh.connect(
            host,
            username=user,
            client_keys=[key] if key else [],
            password=password,
            known_hosts=None,
            preferred_auth="publickey,password" if password else "publickey",
            connect_timeout=timeout,
        ) as conn:
            return await asyncio.wait_for(conn.run(command, check=False), timeout)

    return asyncio.run(go())


def ssh_ready(host: str, timeout: float = 30.0) -> None:
    """Wait until `host` answers with an SSH banner."""

    async def banner() -> bool:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, 22), 2)
        except (OSError, TimeoutError):
            return False
        try:
            line = await asyncio.wait_for(r.readline(), 2)
        except (OSError, TimeoutError):
            line = b""
        w.close()
        return line.startswith(b"SSH-2.0")

    wait_for(f"ssh on {host}", lambda: asyncio.run(banner()), timeout)


class Cli:
    """The interlock command with its own home and the test lab's sites file."""

    def __init__(self, home: Path, sites: Path) -> None:
        self.home = home
        self.env = {**os.environ, "INTERLOCK_HOME": str(home), "INTERLOCK_SITES": str(sites)}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "interlock", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"interlock {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    def json(self, *args: str, check: bool = True) -> Any:
        return json.loads(self(*args, "--json", check=check).stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "interlock", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )


@pytest.fixture
def cli(lab: Lab, tmp_path: Path) -> Iterator[Cli]:
    c = Cli(tmp_path / "home", Path(lab.state["dir"]) / labdir.SITES)
    yield c
    c("down", "--all", check=False)


def outstanding(lab: Lab, site: str) -> list[dict[str, Any]]:
    return lab.client.ledger(site, outstanding=True)
