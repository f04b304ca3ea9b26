"""The store is correct with several processes writing, on SQLite and on PostgreSQL alike:
no update lost, a machine never claimed twice, a dead worker taken over by one process."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from interlock.errors import InterlockError
from interlock.model import STEP_LABELS
from interlock.state import NodeRecord, StateUrl, Store, WorkerRecord, open_store

STEPS = list(STEP_LABELS)[:6]
NODES = 30


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateUrl]:
    if request.param == "sqlite":
        yield StateUrl.default(tmp_path)
        return
    url: str = request.getfixturevalue("postgres_url")
    yield StateUrl.parse(url, tmp_path)
    store = open_store(StateUrl.parse(url, tmp_path))  # empty it for the next test
    with store.engine.begin() as c:  # type: ignore[attr-defined]
        for table in ("nodes", "facts", "claims", "workers", "node_roles", "deployments"):
            c.exec_driver_sql(f"DELETE FROM {table}")
    store.close()


def _steps(url: StateUrl, step: str) -> None:
    store = open_store(url)
    for i in range(NODES):
        store.update(f"n-{i}", step=step)  # a read-modify-write of the node's record
    store.close()


def _claims(url: StateUrl, who: str, out: multiprocessing.Queue[tuple[str, str | None]]) -> None:
    store = open_store(url)
    out.put((who, store.claim("metal", [f"m{i}" for i in range(4)], who)))
    store.close()


def _take_over(url: StateUrl, me: str, out: multiprocessing.Queue[tuple[str, bool]]) -> None:
    store = open_store(url)
    out.put((me, store.take_over("dead-1", me, seen_before=1e12)))
    store.close()


def _spawn(target: Callable[..., None], *args: object) -> BaseProcess:
    p = multiprocessing.get_context("fork").Process(target=target, args=args)
    p.start()
    return p


def _all(procs: list[BaseProcess]) -> None:
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def test_concurrent_read_modify_writes_lose_nothing(state: StateUrl) -> None:
    store = open_store(state)
    for i in range(NODES):
        store.put(NodeRecord(name=f"n-{i}", deployment="d"))
    _all([_spawn(_steps, state, step) for step in STEPS])
    for node in store.nodes("d"):  # each process's step is in each node's timeline
        assert sorted(node.timeline) == sorted(STEPS), node.name
    store.close()


def test_a_machine_is_claimed_by_one_node_only(state: StateUrl) -> None:
    got: multiprocessing.Queue[tuple[str, str | None]] = multiprocessing.get_context("fork").Queue()
    procs = [_spawn(_claims, state, f"node-{i}", got) for i in range(6)]
    results = dict(got.get(timeout=60) for _ in procs)
    _all(procs)
    machines = [m for m in results.values() if m is not None]
    assert sorted(machines) == ["m0", "m1", "m2", "m3"]  # four machines, four nodes
    assert sum(m is None for m in results.values()) == 2
    store = open_store(state)
    for node, machine in results.items():  # the store agrees; a repeated claim is a no-op
        assert store.claimed_by("metal", node) == machine
        if machine is not None:
            assert store.claim("metal", [machine], node) == machine
    store.close()


def test_one_process_takes_over_a_dead_worker(state: StateUrl) -> None:
    store = open_store(state)
    dead = WorkerRecord(executor="dead-1", host="elsewhere/boot", pid=1, started=0.0)
    store.heartbeat(dead)
    got: multiprocessing.Queue[tuple[str, bool]] = multiprocessing.get_context("fork").Queue()
    procs = [_spawn(_take_over, state, f"live-{i}", got) for i in range(5)]
    results = dict(got.get(timeout=60) for _ in procs)
    _all(procs)
    assert sum(results.values()) == 1
    store.close()


def test_a_worker_that_beat_since_is_not_taken_over(state: StateUrl) -> None:
    store: Store = open_store(state)
    store.heartbeat(WorkerRecord(executor="w-1", host="h/b", pid=1, started=0.0))
    assert not store.take_over("w-1", "me", seen_before=0.0)  # it beat after that
    assert [w.executor for w, _ in store.workers()] == ["w-1"]
    store.retire("w-1")
    assert store.workers() == []
    store.close()


@pytest.mark.parametrize(
    "text, problem",
    [
        ("mysql://u:canary-pw@h/db", "unsupported database 'mysql'"),
        ("postgresql://u:canary-pw@/db", "needs a host and a database"),
        ("sqlite://", "sqlite needs a file"),
        ("not a url at all canary-pw", "not a URL"),
    ],
)
def test_a_bad_state_url_is_named_never_echoed(text: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(InterlockError) as e:
        StateUrl.parse(text, tmp_path, where="INTERLOCK_STATE_URL")
    assert str(e.value).startswith("INTERLOCK_STATE_URL: ") and problem in str(e.value)
    assert "canary-pw" not in str(e.value) and e.value.code == 2


def test_a_state_url_is_shown_without_its_password(tmp_path: Path) -> None:
    url = StateUrl.parse("postgresql://me:canary-pw@127.0.0.1:5/db", tmp_path)
    assert "canary-pw" not in str(url) and "canary-pw" not in repr(url)
    assert str(url) == "postgresql://me:***@127.0.0.1:5/db"


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = StateUrl.parse("postgresql://me:canary-pw@127.0.0.1:1/db", tmp_path)
    with pytest.raises(InterlockError) as e:
        open_store(url)
    assert str(e.value).startswith("state database postgresql://me:***@127.0.0.1:1/db: ")
    assert "canary-pw" not in str(e.value) and "\n" not in str(e.value)
