"""Who counts as a live worker: one that beat lately, and whose process (on this host) is
still the one that registered; `up` runs its own work only where none is."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from interlock import workers
from interlock.engine import open_engine
from interlock.state import StateUrl, WorkerRecord, open_store


def record(executor: str, pid: int, host: str | None = None, **kw: object) -> WorkerRecord:
    return WorkerRecord.model_validate(
        {"executor": executor, "host": host or workers.this_host(), "pid": pid,
         "started": time.time(), **kw}
    )  # fmt: skip


def test_a_worker_whose_process_is_gone_is_not_live(tmp_path: Path) -> None:
    store = open_store(StateUrl.default(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    store.heartbeat(record("gone", int(gone.stdout)))
    store.heartbeat(record("me", os.getpid()))
    store.heartbeat(record("elsewhere", 1, host="other-host/boot"))
    assert [w.executor for w in workers.live(store).workers] == ["elsewhere", "me"]


def test_a_silent_worker_elsewhere_is_dead_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(StateUrl.default(tmp_path))
    store.heartbeat(record("elsewhere", 1, host="other-host/boot"))
    monkeypatch.setenv("INTERLOCK_WORKER_TIMEOUT", "0")
    assert not workers.live(store).any
    monkeypatch.setenv("INTERLOCK_WORKER_TIMEOUT", "60")
    assert workers.live(store).any


def test_embedded_processes_are_not_workers_up_takes_work_to(tmp_path: Path) -> None:
    store = open_store(StateUrl.default(tmp_path))
    store.heartbeat(record("other-up", os.getpid(), kind="embedded"))
    assert not workers.live(store).any  # a command running its own: `up` runs its own too
    assert workers.live(store, kind=None).any


def test_a_reused_pid_is_not_the_worker_that_registered(tmp_path: Path) -> None:
    store = open_store(StateUrl.default(tmp_path))
    # This very process, but registered as if before it started: another process's pid.
    store.heartbeat(record("old", os.getpid(), started=time.time() - 10**6))
    assert not workers.live(store).any


def test_a_process_hears_how_many_share_the_work_and_paces_at_its_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(StateUrl.default(tmp_path))
    store.heartbeat(record("elsewhere", 1, host="other-host/boot"))
    store.heartbeat(record("other-up", os.getpid(), kind="embedded"))
    store.heartbeat(record("me", os.getpid()))
    sharing = workers.running_work(store)
    assert sharing == 3  # the worker elsewhere, the embedded command, and this one

    sites = tmp_path / "sites.yaml"
    sites.write_text(yaml.safe_dump({"sites": {"aws": {
        "provider": "aws", "region": "us-east-1", "endpoint": "http://127.0.0.1:9",
        "limits": {"rate": 12},
    }}}))  # fmt: skip
    monkeypatch.setenv("INTERLOCK_SITES", str(sites))
    monkeypatch.setenv("INTERLOCK_HOME", str(tmp_path / "home"))
    e = open_engine()

    async def pace() -> list[float]:
        rates = [e.site("aws").rate.max_rate]
        e.share_rate(sharing)
        rates.append(e.site("aws").rate.max_rate)
        e.share_rate(0)  # nobody counted (the database away): the whole rate, never more
        rates.append(e.site("aws").rate.max_rate)
        return rates

    assert asyncio.run(pace()) == [12, 4, 12]
