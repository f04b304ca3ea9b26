"""The lab's state directory: what is in it, and how a dead lab's leftovers go.

Layout (all created by the lab, all removed by `interlock lab down`):
    lab.pid      the lab process, written first
    state.json   endpoints and sites, written once the lab answers
    sites.yaml   the lab's sites as an interlock sites file
    lab.log      the lab process's output
    ledger.db    resources created and released, per site
    bin/         the node init, built on first use
    nodes/       one directory per node (its disk: overlay upper dir)
    sites/       per-site secrets (mode 0600) and emulator state
    openstack/   the lab's OpenStack (openstack sites only): configs, databases, logs
Outside it: the cgroup2 directories of the lab's systemd nodes,
/sys/fs/cgroup/unified/interlock-lab-<hash of the lab dir>/<node> (node/cgroups.py);
a dead lab's are removed with its other leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from interlock_lab.node import cgroups

PID = "lab.pid"
STATE = "state.json"
LOG = "lab.log"
LEDGER = "ledger.db"
SITES = "sites.yaml"  # an interlock sites file for the lab's sites
OWNED = (
    PID,
    STATE,
    SITES,
    LEDGER,
    LEDGER + "-wal",
    LEDGER + "-shm",
    "bin",
    "nodes",
    "sites",
    "openstack",
)
MARK = "INTERLOCK_LAB_DIR_MARK"  # in the environment of every process of a lab


def default_dir() -> Path:
    env = os.environ.get("INTERLOCK_LAB_DIR")
    if env:
        return Path(env).absolute()
    if os.geteuid() == 0:
        return Path("/var/lib/interlock/lab")
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "interlock" / "lab"


def write_secret(path: Path, text: str) -> None:
    """Write a secret file: mode 0600 from its creation, before any byte is in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(fd, "w") as f:
        f.write(text)


def secret(path: Path) -> str:
    """The random secret in `path`, created (0600) on first use."""
    if not path.exists():
        import secrets

        write_secret(path, secrets.token_urlsafe(18) + "\n")
    return path.read_text().strip()


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


def become_subreaper() -> None:
    """Orphans of the lab's processes (service workers) become ours to reap, not init's."""
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until every process in `pids` has ended, all its threads included (a
    pidfd turns readable only then, after the process has closed its sockets).
    Returns the pids still running at the deadline."""
    fds: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds[os.pidfd_open(pid)] = pid
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    try:
        while fds:
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            ready = poller.poll(left_ms)
            if not ready:
                break
            for fd, _ in ready:
                poller.unregister(fd)
                os.close(fd)
                del fds[fd]
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


def leftover_processes(root: Path) -> list[int]:
    """Processes started by a lab in `root`: found by the mark in their environment, or
    in the cgroups of its systemd nodes (systemd starts everything with a clean one)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and alive(int(entry.name), root):
            pids.append(int(entry.name))
    lab = cgroups.lab_cgroup(root)
    if lab is not None:
        pids += [p for p in cgroups.processes(lab) if p not in pids]
    return pids


def leftover_cgroups(root: Path) -> list[Path]:
    """The cgroup directories of the lab in `root` (its systemd nodes'), deepest first."""
    lab = cgroups.lab_cgroup(root)
    return cgroups.tree(lab) if lab is not None else []


def clean_leftovers(root: Path) -> list[int]:
    """End what a crashed lab in `root` left running and remove its files and cgroups."""
    pids = leftover_processes(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(pids, timeout=10)
    lab = cgroups.lab_cgroup(root)
    if lab is not None:
        cgroups.remove(lab)
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
