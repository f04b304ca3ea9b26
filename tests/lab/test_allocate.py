"""`interlock up/ssh/down` against the lab: the eight steps, end to end, as a user runs them;
every test once with the state in SQLite (the default) and once in PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.lab.conftest import Cli, Lab, Lines, outstanding


@pytest.fixture
def cli(backend_cli: Cli) -> Cli:
    return backend_cli


def password_refused(ip: str) -> bool:
    async def attempt() -> bool:
        try:
            async with asyncssh.connect(
                ip, username="root", password="not-a-password", known_hosts=None,
                client_keys=None, agent_path=None, preferred_auth="password",
            ):  # fmt: skip
                return False
        except asyncssh.PermissionDenied:
            return True

    import asyncio

    return asyncio.run(attempt())


@pytest.mark.parametrize(("site", "os_"), [("aws", "ubuntu-24.04"), ("metal", "debian-12")])
def test_up_secures_root_and_down_releases_everything(
    lab: Lab, cli: Cli, site: str, os_: str
) -> None:
    before = len(outstanding(lab, site))
    nodes = cli.json("up", "t", "--count", "2", "--site", site, "--cpus", "2", "--memory", "4",
                     "--os", os_)  # fmt: skip
    assert [n["status"] for n in nodes] == ["ready", "ready"], nodes
    platform = (cli.home / "platform_ed25519").read_text()
    platform_pub = asyncssh.import_private_key(platform).export_public_key().decode().split()[1]
    for n in nodes:
        probe = "id -u; cat /root/.ssh/authorized_keys; cat /home/*/.ssh/authorized_keys; true"
        shown = cli("ssh", n["name"], "--", probe).stdout.split("\n")
        assert shown[0] == "0"
        keys = [line for line in shown[1:] if line.strip()]
        assert keys and all(platform_pub in k for k in keys), keys  # only the platform key left
        assert password_refused(n["public_ip"])
    assert not list((cli.home / "keys").iterdir())  # node private keys deleted
    assert not [e for e in outstanding(lab, site) if e["kind"] == "keypair"]
    cli("down", "t")
    assert len(outstanding(lab, site)) == before
    assert cli.json("ls") == []


def test_the_node_key_goes_in_user_data_or_in_a_key_pair_made_and_deleted(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    # By default the key goes in RunInstances' cloud-config: no key pair is ever made.
    # node_key: key-pair makes one per node and deletes it once the node is secured. Either
    # way the node ends up secured, its key gone from it.
    made: dict[str, list[str]] = {}
    for mode in ("user-data", "key-pair"):
        cli.env["INTERLOCK_SITES"] = str(
            lab.sites_with(tmp_path / f"{mode}.yaml", aws={"node_key": mode})
        )
        pairs = [e for e in lab.client.ledger("aws") if e["kind"] == "keypair"]
        (node,) = cli.json("up", mode, "--site", "aws")
        assert node["status"] == "ready", node
        assert not [f for f in node["fixups"] if f.startswith("key_removal")], node["fixups"]
        probe = "cat /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys"
        shown = cli("ssh", node["name"], "--", probe).stdout
        assert f"interlock:{node['name']}" not in shown and shown.strip()
        after = lab.client.ledger("aws")
        made[mode] = [e["rid"] for e in after if e["kind"] == "keypair" and e not in pairs]
        assert not [e for e in outstanding(lab, "aws") if e["kind"] == "keypair"]
        assert not list((cli.home / "keys").iterdir())
        cli("down", mode)
    assert made["user-data"] == [] and len(made["key-pair"]) == 1, made
    assert cli.json("ls") == []


def test_login_discovery_follows_clouds_quirks(lab: Lab, cli: Cli) -> None:
    # rhel-9 logs in as cloud-user (no hint says so); ubuntu-22.04 as dhc-user, which only
    # cloud-init's root redirect names, and whose key lands seconds after sshd answers.
    nodes = cli.json("up", "q", "--count", "1", "--site", "quirks", "--os", "rhel-9")
    assert (nodes[0]["status"], nodes[0]["login_user"]) == ("ready", "cloud-user")
    assert any("found by probing" in f for f in nodes[0]["fixups"])
    late = cli.json("up", "late", "--site", "quirks", "--os", "ubuntu-22.04")
    assert (late[0]["status"], late[0]["login_user"]) == ("ready", "dhc-user"), late
    assert any('root redirected to "dhc-user"' in f for f in late[0]["fixups"])


def test_a_second_allocation_uses_what_the_first_learned(lab: Lab, cli: Cli) -> None:
    first = cli.json("up", "one", "--site", "quirks", "--os", "rhel-9")
    second = cli.json("up", "two", "--site", "quirks", "--os", "rhel-9")

    def login_fixups(node: dict[str, Any]) -> list[str]:
        return [f for f in node["fixups"] if f.startswith("login:")]

    assert login_fixups(first[0]) and not login_fixups(second[0])
    assert second[0]["login_user"] == "cloud-user"


def test_quota_error_fails_over_to_the_next_site(lab: Lab, cli: Cli) -> None:
    nodes = cli.json("up", "fo", "--site", "full,aws")
    assert nodes[0]["status"] == "ready" and nodes[0]["site"] == "aws"
    assert [a["site"] for a in nodes[0]["attempts"]] == ["full", "aws"]
    assert "InsufficientInstanceCapacity" in nodes[0]["attempts"][0]["why"]
    assert not outstanding(lab, "full")


def test_failed_attempt_rolls_back_what_it_created(lab: Lab, cli: Cli) -> None:
    done = cli("up", "rb", "--site", "noeip", "--json", check=False)
    assert done.returncode == 1
    (node,) = json.loads(done.stdout)
    assert node["status"] == "failed" and "InvalidParameterValue" in node["error"]
    assert "\n" not in node["error"]
    assert not outstanding(lab, "noeip")  # server and key pair both released
    assert not list((cli.home / "keys").iterdir())


def test_output_outside_a_terminal_shows_every_error_whole(lab: Lab, cli: Cli) -> None:
    # Both sites fail: a long error naming each. Read from a pipe (not a terminal), rich
    # would lay it out for 80 columns; every node's error must come out whole, on one line.
    done = cli("up", "pipe", "--count", "2", "--site", "full,noeip", check=False)
    assert done.returncode == 1
    nodes = cli.json("ls")
    errors = [n["error"] for n in nodes]
    assert len(errors) == 2 and all(len(e) > 120 and "full: " in e for e in errors), errors
    listed = cli("ls").stdout.splitlines()
    for shown in (done.stdout.splitlines(), listed):
        for e in errors:
            assert f"  error: {e}" in shown, (e, shown)
    for name in ("pipe-1", "pipe-2"):  # one node per line, its error below it
        head = next(i for i, line in enumerate(listed) if line.startswith(f"{name}  "))
        assert "  failed" in listed[head] and listed[head + 1].startswith("  error: ")
    cli("down", "pipe")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "nowhere"], "unknown site 'nowhere'"),
        (["--site", "metal", "--cpus", "64"], "no flavor with ≥64 vCPU"),
        (["--site", "aws", "--os", "windows-11"], "no image of windows-11"),
        (["--site", "aws", "--os", "Ubuntu 24.04"], "--os"),
    ],
)
def test_bad_requests_fail_clearly_and_create_nothing(
    lab: Lab, cli: Cli, args: list[str], message: str
) -> None:
    before = lab.client.ledger()
    done = cli("up", "bad", *args, check=False)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert lab.client.ledger() == before
    assert cli.json("ls") == []


def test_killed_allocation_resumes_where_it_stopped(lab: Lab, cli: Cli) -> None:
    # fedora-41 boots for 20 s before sshd answers: the kill lands while step 5 waits,
    # as soon as `up` reports (on stderr, as it goes) that the node is in step 5.
    proc = cli.popen("up", "k", "--site", "quirks", "--os", "fedora-41")
    assert proc.stderr is not None
    try:
        Lines(proc.stderr).wait(r"^k-1 \[quirks\] allocating public address", timeout=120)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert cli.json("ls")[0]["status"] == "allocating"
    nodes = cli.json("resume")
    assert nodes[0]["status"] == "ready", nodes
    assert nodes[0]["login_user"] == "fedora"
    servers = [e for e in lab.client.ledger("quirks") if e["kind"] == "server"
               and e["rid"] == nodes[0]["server_id"]]  # fmt: skip
    assert len(servers) == 1  # the request step was not repeated
