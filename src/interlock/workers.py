"""Who runs durable work, and taking over a dead one's.

Every process that runs workflows (`interlock worker`, or a command running its own work
where no worker is up) registers in the store and beats. DBOS records each workflow with
the executor that runs it and, on its own, recovers only its own executor's at launch;
a live process that sees another gone (no beat for `dead_after` seconds, or, on this
host, its pid no longer there) claims it in one transaction and hands its unfinished
workflows to DBOS's recovery (`DBOS._recover_pending_workflows`), which puts each back
on its queue: exactly one live worker dequeues it and goes on from its last finished step.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from interlock.state import Store, WorkerRecord

log = logging.getLogger("interlock.workers")
BEAT = 2.0  # seconds between beats
LEGACY = "local"  # the executor id of workflows an older interlock (or DBOS's default) left


def dead_after() -> float:
    """Seconds without a beat before another host's worker counts as dead."""
    return float(os.environ.get("INTERLOCK_WORKER_TIMEOUT", "30"))


def this_host() -> str:
    """The host, and this boot of it: a pid means something only within one boot."""
    boot = Path("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}/{boot.read_text().strip() if boot.exists() else ''}"


def _alive_here(pid: int, started: float) -> bool:
    """Whether the process `pid` of this host is still the one that registered."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with suppress(OSError, ValueError, IndexError):
        return _started(pid) <= started + 1  # not a later process that reused the pid
    return True


def _started(pid: int) -> float:
    """When `pid` started (Unix time), from /proc."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


def new_executor() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Live:
    """The workers that beat recently (not counting `me`)."""

    workers: list[WorkerRecord]

    @property
    def any(self) -> bool:
        return bool(self.workers)


def live(store: Store, kind: Literal["worker", "embedded"] | None = "worker") -> Live:
    now, host = time.time(), this_host()
    found = []
    for w, seen in store.workers():
        if kind is not None and w.kind != kind:
            continue
        if w.host == host and not _alive_here(w.pid, w.started):
            continue
        if now - seen <= dead_after():
            found.append(w)
    return Live(found)


def running_work(store: Store) -> int:
    """How many live processes run work (workers and embedded commands; clients never
    register)."""
    return len(live(store, kind=None).workers)


def take_over_dead(store: Store, me: str) -> list[str]:
    """Recover the unfinished workflows of every dead worker (and of the legacy executor
    at the first call); returns the executors taken over."""
    from dbos import DBOS

    now, host = time.time(), this_host()
    taken: list[str] = []
    for w, seen in store.workers():
        if w.executor == me:
            continue
        gone_here = w.host == host and not _alive_here(w.pid, w.started)
        silent = now - seen > dead_after()
        if not (gone_here or silent):
            continue
        # Whoever's update lands first recovers it; `seen` unchanged proves it still silent.
        if store.take_over(w.executor, me, seen_before=seen + 1e-6):
            handles = DBOS._recover_pending_workflows([w.executor])
            if handles:  # a process that ended with nothing left unfinished is no news
                log.warning(
                    "worker %s (pid %s on %s) is gone: %d workflows back on their queues",
                    w.executor,
                    w.pid,
                    w.host.split("/")[0],
                    len(handles),
                )
            store.retire(w.executor)
            taken.append(w.executor)
    return taken


@contextmanager
def registered(
    store: Store,
    executor: str,
    kind: Literal["worker", "embedded"],
    peers: Callable[[int], None] = lambda _: None,
) -> Iterator[WorkerRecord]:
    """This process registered and beating (a thread) while inside; it checks for dead
    workers at once and at every beat. It stops beating on the way out, and stays
    registered until retired: until then, once its pid is gone (or its beat is old), a
    live process takes over what it left (`retire` it once it holds nothing). `peers`
    hears, at once and at every beat, how many live processes run work (this one too)."""
    me = WorkerRecord(
        executor=executor, host=this_host(), pid=os.getpid(), started=time.time(), kind=kind
    )
    store.heartbeat(me)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(BEAT):
            try:
                store.heartbeat(me)
                take_over_dead(store, executor)
                peers(running_work(store))
            except Exception as err:  # the database away for a moment: beat again next time
                log.warning("worker heartbeat: %s", err)

    recover_legacy()
    take_over_dead(store, executor)
    peers(running_work(store))
    thread = threading.Thread(target=beat, name="interlock-heartbeat", daemon=True)
    thread.start()
    try:
        yield me
    finally:
        stop.set()
        thread.join(timeout=10)


def recover_legacy() -> None:
    """Workflows left under DBOS's default executor id (an interlock before workers)."""
    from dbos import DBOS

    DBOS._recover_pending_workflows([LEGACY])
