"""Roles and deployments on lab nodes: a Docker Swarm converged from one file on aws and on
metal (only --site differs), a service on an overlay network answering by name from every
node and published in host mode on each public address; a no-op re-apply; a worker added
by raising the count; a failing role (ERROR, BLOCKED below it, the rest converges; fixed,
re-applied); apply killed mid-converge and resumed without re-running an active
node-role; a bad file refused before anything is made; down leaves nothing (ledger)."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.conftest import Cli, Lab, Lines, outstanding
from tests.unit.planted import leaked

HERE = Path(__file__).parent
SITES = ("aws", "metal")


def deployment(tmp_path: Path, name: str, workers: int = 2, **extra: Any) -> Path:
    image = tmp_path / "busybox.tar"
    if not image.exists():
        Cli.lab_image(image)
    doc = {
        "name": name,
        "groups": {
            "manager": {"count": 1, "traits": {"os": "ubuntu-24.04"}, "roles": ["swarm-manager"]},
            "worker": {"count": workers, "traits": {"os": "ubuntu-24.04"},
                       "roles": ["swarm-worker", *extra.pop("worker_roles", [])]},
        },
        "attributes": {"docker": {"images": ["busybox.tar"]}},
        "ports": [80],
        **extra,
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def on(cli: Cli, node: str, command: str) -> str:
    return cli("ssh", node, command).stdout


def states(cli: Cli, name: str) -> dict[str, dict[str, Any]]:
    return {r["node"] + "/" + r["role"]: r for r in cli.json("status", name)["node_roles"]}


def swarm_serves(cli: Cli, nodes: list[dict[str, Any]]) -> None:
    """3 Ready; a 3-replica service on an overlay network, published in host mode on port
    80, answers by name from every node, and from the host on each public address."""
    ready = on(cli, "swarm-manager-1", "docker node ls --format '{{.Status}}'").split()
    assert ready == ["Ready"] * 3
    on(cli, "swarm-manager-1",
       "docker network create -d overlay --attachable web >/dev/null && "
       "docker service create -q --detach=false --name hello --replicas 3 --network web "
       "--endpoint-mode dnsrr --replicas-max-per-node 1 "
       "--publish mode=host,target=80,published=80 interlock-lab/busybox:1 >/dev/null")  # fmt: skip
    for n in nodes:
        got = on(cli, n["name"], "docker run --rm --network web interlock-lab/busybox:1 "
                                 "/bin/busybox wget -q -O- http://hello/")  # fmt: skip
        assert "interlock-lab/busybox:1" in got
        assert "interlock-lab/busybox:1" in http(n["public_ip"])


def http(ip: str) -> str:
    with urllib.request.urlopen(f"http://{ip}/", timeout=10) as r:
        return str(r.read().decode())


@pytest.mark.parametrize("site", SITES)
def test_one_swarm_file_converges_on_each_site(
    lab: Lab, cli: Cli, tmp_path: Path, site: str
) -> None:
    before = outstanding(lab, site)
    path = deployment(tmp_path, "swarm")
    done = cli.json("apply", str(path), "--site", site)
    assert done["converged"] and len(done["added"]) == 3
    swarm_serves(cli, done["nodes"])
    # The token went to the workers and is shown nowhere.
    token = on(cli, "swarm-manager-1", "docker swarm join-token -q worker").strip()
    shown = cli("status", "swarm", "--attributes").stdout + json.dumps(done)
    assert token and not leaked(shown, token)
    assert "(secret)" in shown
    # Again, unchanged: nothing runs.
    again = cli("apply", str(path), "--site", site)
    assert "nothing to change" in again.stdout, again.stdout
    assert all(r["runs"] == 1 for r in states(cli, "swarm").values())
    cli("down", "swarm")
    assert outstanding(lab, site) == before


def test_a_worker_is_added_by_raising_the_count_and_removed_by_lowering_it(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    before = outstanding(lab, "aws")
    cli("apply", str(deployment(tmp_path, "grow", workers=1)), "--site", "aws")
    more = cli.json("apply", str(deployment(tmp_path, "grow", workers=2)), "--site", "aws")
    assert more["added"] == ["grow-worker-2"] and more["converged"]
    assert sorted(more["ran"]) == ["grow-worker-2/docker", "grow-worker-2/swarm-worker"]
    listed = on(cli, "grow-manager-1", "docker node ls --format '{{.Status}}'").split()
    assert listed == ["Ready"] * 3
    fewer = cli.json("apply", str(deployment(tmp_path, "grow", workers=1)), "--site", "aws")
    assert fewer["removed"] == ["grow-worker-2"]
    assert "grow-worker-2" not in {n["name"] for n in cli.json("ls")}
    cli("down", "grow")
    assert outstanding(lab, "aws") == before


def test_a_failing_role_blocks_only_what_depends_on_it(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    """gate fails on the workers: their `after` is blocked; the manager's side and the
    Ansible role converge; with the fix (the attribute), apply again converges."""
    before = outstanding(lab, "metal")
    path = deployment(tmp_path, "gated", worker_roles=["after", "motd"],
                      roles_from=[str(HERE / "roles")])  # fmt: skip
    failed = cli("apply", str(path), "--site", "metal", check=False)
    assert failed.returncode == 1
    got = states(cli, "gated")
    for w in ("gated-worker-1", "gated-worker-2"):
        assert got[f"{w}/gate"]["state"] == "error"
        assert "exited with 7" in got[f"{w}/gate"]["error"]
        assert "refusing, as told" in got[f"{w}/gate"]["tail"]
        assert got[f"{w}/after"]["state"] == "blocked"
        assert got[f"{w}/after"]["blocked_by"] == f"{w}/gate"
        assert got[f"{w}/swarm-worker"]["state"] == "active"
        assert got[f"{w}/motd"]["state"] == "active"  # the Ansible role
        assert "deployment gated on metal" in on(cli, w, "cat /etc/motd")
    assert "✗ gate" in cli("status", "gated").stdout
    doc = yaml.safe_load(path.read_text())
    doc["attributes"]["gate"] = {"fail": False}
    path.write_text(yaml.safe_dump(doc))
    fixed = cli.json("apply", str(path), "--site", "metal")
    assert fixed["converged"]
    got = states(cli, "gated")
    assert got["gated-worker-1/gate"]["attempt"] == 2
    assert got["gated-worker-1/swarm-worker"]["runs"] == 1  # active: not run again
    cli("down", "gated")
    assert outstanding(lab, "metal") == before


def test_apply_killed_mid_converge_is_finished_by_resume(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    before = outstanding(lab, "aws")
    path = deployment(tmp_path, "killed", worker_roles=["slow"],
                      roles_from=[str(HERE / "roles")])  # fmt: skip
    proc = cli.popen("apply", str(path), "--site", "aws")
    assert proc.stderr is not None
    try:
        Lines(proc.stderr).wait(r"/slow running", timeout=240)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    at_kill = states(cli, "killed")
    active = {k: r["runs"] for k, r in at_kill.items() if r["state"] == "active"}
    assert active and any(r["state"] == "running" for r in at_kill.values())
    cli("resume")
    after = states(cli, "killed")
    assert {r["state"] for r in after.values()} == {"active"}
    assert {k: after[k]["runs"] for k in active} == active  # none of them ran again
    listed = on(cli, "killed-manager-1", "docker node ls --format '{{.Status}}'").split()
    assert listed == ["Ready"] * 3
    cli("down", "killed")
    assert outstanding(lab, "aws") == before


def test_a_bad_file_is_refused_before_anything_is_made(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    before = outstanding(lab, "aws")
    path = deployment(tmp_path, "bad")
    doc = yaml.safe_load(path.read_text())
    doc["groups"]["worker"]["roles"] = ["swarm-worker", "no-such-role"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = cli("apply", str(path), "--site", "aws", check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "groups.worker.roles[1]" in done.stderr
    assert "unknown role 'no-such-role'" in done.stderr and "Traceback" not in done.stderr
    assert cli.json("ls") == [] and outstanding(lab, "aws") == before
