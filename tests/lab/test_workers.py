"""Several workers on one PostgreSQL: they share the sites' limits, and a worker killed for
good has its unfinished work finished by another, each node created once, nothing left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock.state import Attempt, NodeRecord, StateUrl, open_store
from interlock.workers import live as workers_live
from tests.lab.conftest import Cli, Lab, lab_cli, outstanding, wait_for

HERE = Path(__file__).parent
LIMITS = {"aws": 3, "metal": 2}  # nodes in flight at once, across all workers
WANT = {"aws": 16, "metal": 4}  # metal has four Ubuntu machines


@pytest.fixture
def cli(lab: Lab, tmp_path: Path, pg_state: str) -> Iterator[Cli]:
    """The lab's sites with low limits, the state in PostgreSQL."""
    limits = {site: {"limits": {"concurrency": n}} for site, n in LIMITS.items()}
    sites = lab.sites_with(tmp_path / "sites.yaml", **limits)
    with lab_cli(lab.state, tmp_path / "home") as c:
        c.env["INTERLOCK_SITES"] = str(sites)
        c.env["INTERLOCK_STATE_URL"] = pg_state
        yield c


@pytest.fixture
def workers(cli: Cli) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """Two `interlock worker` processes (stopped afterwards, whatever happened)."""
    started: list[tuple[subprocess.Popen[str], str]] = []
    try:
        for _ in range(2):
            proc = cli.popen("worker", "--json")
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first, proc.stderr.read() if proc.stderr else ""
            started.append((proc, json.loads(first)["worker"]))
        yield started
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)


def peak(attempts: list[Attempt]) -> int:
    """The most attempts that held a slot at one moment."""
    edges = sorted(
        [(a.started, 1) for a in attempts if a.started]
        + [(a.ended, -1) for a in attempts if a.ended]
    )  # an end sorts before a start at the same instant
    now = top = 0
    for _, step in edges:
        now += step
        top = max(top, now)
    return top


def test_two_workers_share_the_limits_and_one_finishes_what_a_killed_one_left(
    lab: Lab, cli: Cli, workers: list[tuple[subprocess.Popen[str], str]], pg_state: str
) -> None:
    before = {site: outstanding(lab, site) for site in WANT}
    store = open_store(StateUrl.parse(pg_state, cli.home))
    (victim, victim_id), (survivor, survivor_id) = workers
    for site, count in WANT.items():
        done = cli.json("up", f"w{site}", "--count", str(count), "--site", site, "--detach")
        assert len(done["enqueued"]) == count

    # Killed for good while it holds nodes in flight.
    def victims() -> list[NodeRecord]:
        return [n for n in store.nodes() if n.status == "allocating" and n.worker == victim_id]

    held = wait_for("the victim to hold nodes in flight", victims, timeout=120)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()

    def ended() -> list[NodeRecord] | None:
        nodes = store.nodes()
        return nodes if all(n.status in ("ready", "failed") for n in nodes) else None

    nodes = wait_for("every node to end", ended, timeout=600)
    assert [n.status for n in nodes] == ["ready"] * sum(WANT.values()), [
        (n.name, n.error) for n in nodes if n.status != "ready"
    ]
    by_site = Counter(n.site for n in nodes)
    assert by_site == Counter(WANT)
    # The victim's nodes in flight were finished by the survivor (one might have ended in
    # the moment between the look and the kill).
    taken = [store.get(n.name) for n in held]
    assert any(n is not None and n.worker == survivor_id for n in taken), taken
    # Limits held across both workers: never more attempts in flight than the site allows.
    for site, limit in LIMITS.items():
        attempts = [a for n in nodes for a in n.attempts if a.site == site]
        assert len(attempts) == WANT[site]  # one attempt each: nothing began twice
        assert 0 < peak(attempts) <= limit, (site, peak(attempts))
    # Each node created once: one server a node in the lab's ledger.
    for site, count in WANT.items():
        servers = [
            e for e in outstanding(lab, site) if e["kind"] == "server" and e not in before[site]
        ]
        assert len(servers) == count, servers
    assert not [w for w, _ in store.workers() if w.executor == victim_id]  # taken over
    for site in WANT:
        cli("down", f"w{site}")
        assert outstanding(lab, site) == before[site]  # nothing leaked
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=60) == 0
    assert not workers_live(store).any  # gone; the next live process retires its row
    store.close()


def test_up_without_workers_runs_its_own_and_detach_says_nobody_will(
    cli: Cli, pg_state: str
) -> None:
    done = cli("up", "lone", "--count", "1", "--site", "aws", "--detach", "--json")
    assert json.loads(done.stdout) == {"deployment": "lone", "enqueued": ["lone-1"]}
    assert "no worker is up" in done.stderr
    nodes: Any = cli.json("resume")  # runs them itself
    assert [n["status"] for n in nodes] == ["ready"]


def gated(tmp_path: Path, count: int) -> Path:
    """A deployment of `count` nodes, each with two small roles (gate, then after)."""
    path = tmp_path / "gated.yaml"
    path.write_text(
        yaml.safe_dump({
            "name": "gated",
            "groups": {"g": {"count": count, "traits": {"os": "ubuntu-24.04"},
                             "roles": ["gate", "after"]}},
            "attributes": {"gate": {"fail": False}},
            "roles_from": [str(HERE / "roles")],
        })
    )  # fmt: skip
    return path


def test_apply_detach_without_workers_is_refused_twice_and_run_by_resume(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    before = outstanding(lab, "aws")
    path = gated(tmp_path, count=1)
    done = cli("apply", str(path), "--site", "aws", "--detach")
    assert "no worker is up" in done.stderr
    again = cli("apply", str(path), "--site", "aws", check=False)
    assert again.returncode == 1 and "being applied by the workers" in again.stderr
    assert cli.json("status", "gated")["applying"]
    cli("resume")  # runs it itself, to its end
    shown = cli.json("status", "gated")
    assert shown["applying"] is None and shown["error"] is None
    assert {r["state"] for r in shown["node_roles"]} == {"active"}
    assert len(shown["node_roles"]) == 2
    cli("down", "gated")
    assert outstanding(lab, "aws") == before


def test_apply_detach_is_run_by_the_workers_and_taken_over_when_its_worker_dies(
    lab: Lab,
    cli: Cli,
    workers: list[tuple[subprocess.Popen[str], str]],
    pg_state: str,
    tmp_path: Path,
) -> None:
    from dbos import DBOSClient

    before = outstanding(lab, "aws")
    path = gated(tmp_path, count=2)
    done = cli.json("apply", str(path), "--site", "aws", "--detach")
    assert done["deployment"] == "gated" and done["workflow"].startswith("apply-gated-")
    assert cli.json("status", "gated")["applying"] == done["workflow"]
    url = StateUrl.parse(pg_state, cli.home)
    client = DBOSClient(system_database_url=url.workflows)
    store = open_store(url)
    try:
        handle: Any = client.retrieve_workflow(done["workflow"])
        by_pid = {wid: proc for proc, wid in workers}

        def holder() -> str | None:  # the worker running the apply, once nodes are on record
            status = handle.get_status()
            running = status.status == "PENDING" and status.executor_id in by_pid
            return status.executor_id if running and store.nodes("gated") else None

        victim = wait_for("a worker to run the apply", holder, timeout=120)
        os.kill(by_pid[victim].pid, signal.SIGKILL)
        by_pid[victim].wait()

        def ended() -> dict[str, Any] | None:
            shown = cli.json("status", "gated")
            return shown if shown["applying"] is None else None

        shown = wait_for("the other worker to finish the apply", ended, timeout=600)
        assert shown["error"] is None
        assert handle.get_status().status == "SUCCESS"
        assert handle.get_status().executor_id != victim  # taken over
        roles = {r["node"] + "/" + r["role"]: r for r in shown["node_roles"]}
        assert len(roles) == 4 and {r["state"] for r in roles.values()} == {"active"}
        assert {r["runs"] for r in roles.values()} == {1}  # nothing ran twice
        servers = [e for e in outstanding(lab, "aws") if e["kind"] == "server" and e not in before]
        assert len(servers) == 2  # each node created once
    finally:
        client.destroy()
        store.close()
    cli("down", "gated")
    assert outstanding(lab, "aws") == before
