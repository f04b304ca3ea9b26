"""The lab's state directory: what is in it, and how a dead lab's leftovers go.

Layout (all created by the lab, all removed by `interlock lab down`):
    lab.pid      the lab process, written first
    state.json   endpoints and sites, written once the lab answers
    lab.log      the lab process's output
    ledger.db    resources created and released, per site
    bin/         the node init, built on first use
    nodes/       one directory per node (its disk: overlay upper dir)
    sites/       per-site secrets (mode 0600) and emulator state
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

PID = "lab.pid"
STATE = "state.json"
LOG = "lab.log"
LEDGER = "ledger.db"
OWNED = (PID, STATE, LEDGER, LEDGER + "-wal", LEDGER + "-shm", "bin", "nodes", "sites")
MARK = "INTERLOCK_LAB_DIR_MARK"  # in the environment of every process of a lab


def default_dir() -> Path:
    env = os.environ.get("INTERLOCK_LAB_DIR")
    if env:
        return Path(env).absolute()
    if os.geteuid() == 0:
        return Path("/var/lib/interlock/lab")
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "interlock" / "lab"


def write_state(root: Path, state: dict[str, Any]) -> None:
    tmp = root / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.rename(root / STATE)


def read_state(root: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((root / STATE).read_text())
        return data
    except (OSError, ValueError):
        return None


def lab_pid(root: Path) -> int | None:
    """The pid of this directory's lab process, if it is alive."""
    try:
        pid = int((root / PID).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid, root) else None


def alive(pid: int, root: Path) -> bool:
    """Is `pid` a live process of the lab in `root`? (Zombies have no environment.)"""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"{MARK}={root}".encode() in env


def gone(pid: int) -> bool:
    """Has every thread of `pid` exited (a zombie, or reaped)? Only then are its
    sockets closed: the leader turns zombie while other threads still hold them,
    and an exiting process loses its environment before its files."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return True  # reaped
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # this thread ended while we looked; others may not have
        if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            return False
    return True


def leftover_processes(root: Path) -> list[int]:
    """Processes started by a lab in `root` (found by the mark in their environment)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and alive(int(entry.name), root):
            pids.append(int(entry.name))
    return pids


def clean_leftovers(root: Path) -> list[int]:
    """End what a crashed lab in `root` left running and remove its files."""
    pids = leftover_processes(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    remove_lab_files(root, keep_log=True)
    return pids


def remove_lab_files(root: Path, keep_log: bool) -> None:
    for name in OWNED + (() if keep_log else (LOG,)):
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if not keep_log:
        with contextlib.suppress(OSError):
            root.rmdir()
