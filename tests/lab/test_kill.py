"""Killed anywhere, finished by the next `resume`: `interlock up` and `interlock resume` of
20 nodes over metal and aws, each killed (SIGKILL) at a random moment, seeded, again and
again; then one `resume` to the end. Every node is ready, each with one server, and after
`down` the lab's ledger holds nothing of theirs."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path

from interlock.engine import open_engine
from interlock.model import Traits
from interlock.services import deploy
from interlock.state import NodeRecord
from interlock_lab import labdir
from tests.lab.conftest import Cli, Lab, Lines, outstanding

SEED = 20261130
KILLS = 10
NODES = 20


def kill_at_random(cli: Cli, args: list[str], rng: random.Random) -> bool:
    """Run `interlock ARGS` and SIGKILL it at a random moment: a time from its start (in
    start-up, looking at the sites, recording the nodes, starting their workflows) or a
    number of its progress lines (the nodes in their steps). False if it ended first."""
    proc = cli.popen(*args)
    assert proc.stderr is not None
    lines = Lines(proc.stderr)
    try:
        if rng.random() < 0.5:
            proc.wait(timeout=rng.uniform(0.3, 6.0))  # the moment is the experiment
            return False
        if not lines.skip(rng.randint(1, 6 * NODES), timeout=300):
            proc.wait()
            return False
    except subprocess.TimeoutExpired:
        pass
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def test_up_and_resume_killed_at_random_moments_end_with_every_node_ready(
    lab: Lab, cli: Cli
) -> None:
    rng = random.Random(SEED)
    before = {site: outstanding(lab, site) for site in ("metal", "aws")}
    kills, rounds = 0, 0
    while kills < KILLS:
        rounds += 1
        name = f"kill{rounds}"
        up = ["up", name, "--count", str(NODES), "--site", "metal,aws"]
        args = up
        while kill_at_random(cli, args, rng):
            kills += 1
            # Killed before it recorded a node, `up` did nothing: the user runs it again.
            args = ["resume"] if cli.json("ls") else up
        cli("resume")  # uninterrupted: whatever is left ends now
        nodes = cli.json("ls")
        assert [n["status"] for n in nodes] == ["ready"] * NODES, [
            (n["name"], n["status"], n["error"]) for n in nodes if n["status"] != "ready"
        ]
        servers = Counter(
            e["rid"]
            for site in ("metal", "aws")
            for e in outstanding(lab, site)
            if e["kind"] == "server" and e not in before[site]
        )
        # One server a node: no request was repeated, nothing was left by a killed one.
        assert len(servers) == NODES and set(servers.values()) == {1}, servers
        assert {n["site"] for n in nodes} == {"metal", "aws"}  # six machines, then aws
        cli("down", name)
        assert {site: outstanding(lab, site) for site in ("metal", "aws")} == before
    assert kills >= KILLS


def test_nodes_recorded_but_never_started_are_finished_by_resume(lab: Lab, tmp_path: Path) -> None:
    # `up` killed after it recorded the nodes but before it started their workflows: the
    # records name workflow ids DBOS never saw. `resume` starts them from the records.
    e = open_engine(Path(lab.state["dir"]) / labdir.SITES, tmp_path / "home")
    for i in (1, 2, 3):
        e.store.put(
            NodeRecord(
                name=f"orphan-{i}",
                deployment="orphan",
                workflow_id=f"alloc-orphan-{i}-never",
                traits=Traits().model_dump(),
                sites=["aws"],
            )
        )
    nodes = asyncio.run(deploy.resume(e, lambda _: None))
    assert [n.status for n in nodes] == ["ready"] * 3, [n.error for n in nodes]
    assert asyncio.run(deploy.down(e, "orphan")).released == ["orphan-1", "orphan-2", "orphan-3"]
