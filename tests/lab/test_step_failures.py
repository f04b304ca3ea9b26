"""Each of the eight steps failing for real: one clear line, the attempt rolled back, nothing
left on the site (ledger), no node key left on disk. Steps 3, 4 and 5's floating IP are
covered in test_allocate.py (bad requests, failover, rollback after AllocateAddress)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.lab.conftest import Cli, Lab, outstanding


def failed(cli: Cli, lab: Lab, site: str, *args: str) -> dict[str, Any]:
    """`interlock up` that must fail (exit 1) and leave nothing behind; returns the node."""
    done = cli("up", "f", "--site", site, *args, "--json", check=False)
    assert done.returncode == 1, done.stderr
    (node,) = json.loads(done.stdout)
    assert node["status"] == "failed" and "\n" not in node["error"]
    assert not outstanding(lab, site), outstanding(lab, site)
    assert not list((cli.home / "keys").iterdir())
    cli("down", "f")
    return dict(node)


@pytest.fixture
def short_ssh(lab: Lab, cli: Cli, tmp_path: Path) -> Cli:
    """The lab's sites file with the broken site giving nodes 4 s to answer and log in."""
    path = lab.sites_with(tmp_path / "sites.yaml", broken={"limits": {"ssh_timeout": 4}})
    cli.env["INTERLOCK_SITES"] = str(path)
    return cli


def test_steps_1_2_and_8_fail_cleanly_and_step_2_rides_out_throttling(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    # The flaky site's faults fire a set number of times: every `up` meets the next one.
    # Step 2 comes first: a request is checked against the site before anything is made.
    # Steps 1 and 8 meet the site's API where the node key is a key pair.
    path = lab.sites_with(tmp_path / "sites.yaml", flaky={"node_key": "key-pair"})
    cli.env["INTERLOCK_SITES"] = str(path)
    before = lab.client.ledger()
    done = cli("up", "f", "--site", "flaky", check=False)
    assert done.returncode == 1 and lab.client.ledger() == before
    assert done.stderr.strip() == "error: flaky: AuthFailure: injected by the interlock lab"
    assert cli.json("ls") == []
    # Step 2 is throttled twice (retried with backoff), then step 1 cannot register the key.
    step1 = failed(cli, lab, "flaky")
    assert step1["error"].startswith("flaky: node key: InvalidKey.Format")
    # The node was secured, but an allocation that cannot remove its key from the site is
    # rolled back, not kept.
    step8 = failed(cli, lab, "flaky")
    assert step8["error"].startswith("flaky: remove node key: InvalidKeyPair.Duplicate")
    # Every fault spent: the same request now goes through.
    (node,) = cli.json("up", "ok", "--site", "flaky")
    assert node["status"] == "ready"


@pytest.mark.parametrize(
    ("os_", "step", "message"),
    [
        ("ubuntu-24.04", "public address", "did not answer SSH in time"),
        ("debian-12", "login", "no account accepted the node key"),
        ("rocky-9", "root access", "a password is required"),
    ],
)
def test_steps_5_6_7_fail_cleanly_on_nodes_that_cannot_be_used(
    lab: Lab, short_ssh: Cli, os_: str, step: str, message: str
) -> None:
    node = failed(short_ssh, lab, "broken", "--os", os_)
    assert node["error"].startswith(f"broken: {step}: ") and message in node["error"], node
    why = node["error"].removeprefix("broken: ")
    (attempt,) = node["attempts"]
    assert (attempt["site"], attempt["result"], attempt["why"]) == ("broken", "failed", why)
    assert attempt["started"] <= attempt["ended"] and attempt["worker"]  # when, and who ran it
