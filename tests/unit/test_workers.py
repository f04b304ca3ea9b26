"""Who counts as a live worker: one that beat lately, and whose process (on this host) is
still the one that registered; `up` runs its own work only where none is."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interlock import workers
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
