"""A lab for the integration tests: built-in sites plus sites of quirky images, in a
private lab directory, torn down afterwards. Where another lab runs (the README's demo
lab, another test run), this lab's pools move elsewhere (interlock_lab.claims): tests
read addresses from the lab's status, never assume them."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import asyncssh
import boto3
import httpx
import pytest
import yaml
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

from interlock.ssh import access
from interlock_lab import labdir
from interlock_lab.client import LabClient, resolve_sites
from interlock_lab.sitefile import builtin_sites

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Until `check` returns something truthy, with a deadline (tenacity backs off)."""
    try:
        return Retrying(
            retry=retry_if_result(lambda result: not result),
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.02, max=0.5),
        )(check)
    except RetryError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Lines:
    """A process's output, line by line as it comes (a reader thread), to wait on."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait(self, pattern: str, timeout: float) -> str:
        """The first line matching `pattern`; fails at the deadline or if the output ends."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {timeout:g} s") from None
            if line is None:
                raise AssertionError(f"output ended before a line matching {pattern!r}: {seen}")
            if re.search(pattern, line):
                return line
            seen = [*seen[-5:], line]

    def skip(self, count: int, timeout: float) -> bool:
        """Wait for `count` more lines; False if the output ended first."""
        deadline = time.monotonic() + timeout
        for _ in range(count):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"fewer than {count} lines in {timeout:g} s") from None
            if line is None:
                return False
        return True


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

    def pool(self, site: str) -> ipaddress.IPv4Network:
        """The site's public pool in this lab (the site file's, or moved)."""
        return ipaddress.IPv4Network(self.state["sites"][site]["public_pool"])

    def sites_with(self, path: Path, **changes: dict[str, Any]) -> Path:
        """A copy of the lab's sites file at `path`, each named site's entry updated with
        its changes (e.g. `aws={"node_key": "key-pair"}`)."""
        sites = yaml.safe_load((Path(self.state["dir"]) / labdir.SITES).read_text())
        for site, fields in changes.items():
            sites["sites"][site].update(fields)
        path.write_text(yaml.safe_dump(sites))
        return path


@contextmanager
def running_lab(name: str, site_files: list[Path]) -> Iterator[LabClient]:
    """A test session's lab in /var/tmp; afterwards it is down and proven gone."""
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")
    root = Path("/var/tmp") / f"interlock-test-{name}-{os.getpid()}"
    client = LabClient(root)
    client.up(resolve_sites([], site_files))
    try:
        yield client
    finally:
        client.down()
        assert not labdir.leftover_processes(root)
        assert not root.exists()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def lab_cli(state: dict[str, Any], home: Path) -> Iterator[Cli]:
    """The interlock command on a lab's sites file; its nodes released afterwards."""
    c = Cli(home, Path(state["dir"]) / labdir.SITES)
    yield c
    c("down", "--all", check=False)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    sites = [
        builtin_sites()["aws"],
        builtin_sites()["metal"],
        *(HERE / f"{name}.yaml" for name in ("quirks", "faulty", "noeip", "broken", "flaky",
                                              "userquirks", "stormy")),
    ]  # fmt: skip
    with running_lab("lab", sites) as client:
        yield Lab(client)


# Every TCP port from the host's loopback: what `host_admitted` groups admit.
FROM_HOST = {
    "IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "127.0.0.0/8"}]
}  # fmt: skip


@contextmanager
def host_admitted(ec2: Any) -> Iterator[str]:
    """A security group admitting TCP from the host's loopback, as an AWS user makes one
    before launching where the default group admits nothing from outside; deleted after
    (its instances terminated first: the caller's fixtures end before this one)."""
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    name = f"test-host-{os.getpid()}-{time.monotonic_ns()}"
    group = ec2.create_security_group(GroupName=name, Description="tests", VpcId=vpc["VpcId"])
    gid = str(group["GroupId"])
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[FROM_HOST])
    try:
        yield gid
    finally:
        ec2.delete_security_group(GroupId=gid)


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


def answers_ssh(host: str, source: str = "127.0.0.1") -> bool:
    """One connection to port 22 from `source`: does an SSH banner come back?"""

    async def go() -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, 22, local_addr=(source, 0)), 5
            )
        except (OSError, TimeoutError):
            return False
        try:
            return (await asyncio.wait_for(reader.readline(), 5)).startswith(b"SSH-")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    return asyncio.run(go())


def ssh_ready(host: str, timeout: float = 30.0) -> None:
    """Wait until `host` answers with an SSH banner (interlock's own step-5 check)."""
    asyncio.run(access.wait_for_ssh(host, time.monotonic() + timeout))


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

    @staticmethod
    def lab_image(path: Path) -> None:
        """The lab's busybox image archive at `path` (for the docker role)."""
        subprocess.run([sys.executable, "-m", "interlock", "lab", "image", "--out", str(path)],
                       check=True, capture_output=True, timeout=60)  # fmt: skip

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
    with lab_cli(lab.state, tmp_path / "home") as c:
        yield c


def outstanding(lab: Lab, site: str) -> list[dict[str, Any]]:
    return lab.client.ledger(site, outstanding=True)


# -- interlock serve, for the API and UI tests --------------------------------------


@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen[str]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool | None:
    try:
        httpx.get(f"{url}/openapi.json", timeout=5)
        return True
    except httpx.TransportError:
        return None


@pytest.fixture
def server(cli: Cli, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "interlock", "serve", "--port", str(port)],
        env=cli.env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("interlock serve", lambda: process.poll() is None and answers(url))
        yield Server(url, cli("serve", "--show-token").stdout.strip(), process)
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


# -- the state in PostgreSQL (several workers), for the workers' and backends' tests -----


@pytest.fixture
def pg_state(postgres_url: str) -> Iterator[str]:
    """A database of its own on the session's PostgreSQL (dropped afterwards)."""
    import uuid

    import psycopg
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_cli(request: pytest.FixtureRequest, lab: Lab, tmp_path: Path) -> Iterator[Cli]:
    """The interlock command on each state backend in turn: its own home on SQLite, or a
    database of its own on PostgreSQL."""
    with lab_cli(lab.state, tmp_path / "home") as c:
        if request.param == "postgresql":
            c.env["INTERLOCK_STATE_URL"] = request.getfixturevalue("pg_state")
        yield c
