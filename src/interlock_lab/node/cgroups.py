"""The cgroup2 directories of a lab's systemd nodes.

A node that boots systemd gets a cgroup directory of its own under the host's
unified (cgroup2) hierarchy, `<root>/interlock-lab-<lab>/<node>`, and a cgroup
namespace rooted there: its systemd manages that subtree and never sees the host's.
The lab's directory is named after the lab's state directory (a hash of its path),
so two labs on one machine never share one. What a dead lab left here is found
from that name alone (see labdir.clean_leftovers).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import select
import signal
import time
from pathlib import Path

CGROUP2_MAGIC = 0x63677270
MOUNTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))  # hybrid, then unified


class CgroupError(RuntimeError):
    pass


def unified_root() -> Path:
    """Where the host's cgroup2 hierarchy is mounted (hybrid hosts: .../unified)."""
    for path in MOUNTS:
        if _is_cgroup2(path):
            return path
    raise CgroupError("no cgroup2 hierarchy on this machine (looked at /sys/fs/cgroup{,/unified})")


def _is_cgroup2(path: Path) -> bool:
    """Is `path` the mount point of a cgroup2 file system?"""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[4] == str(path) and fields[sep + 1] == "cgroup2":
                    return True
    except (OSError, ValueError):
        return False
    return False


def lab_name(run_dir: Path) -> str:
    digest = hashlib.sha256(str(run_dir.absolute()).encode()).hexdigest()[:12]
    return f"interlock-lab-{digest}"


def lab_cgroup(run_dir: Path) -> Path | None:
    """The lab's own cgroup directory (it may not exist), or None without cgroup2."""
    try:
        return unified_root() / lab_name(run_dir)
    except CgroupError:
        return None


def make(path: Path) -> Path:
    """A fresh, empty cgroup directory at `path` (what an earlier run left goes first)."""
    remove(path)
    path.mkdir(parents=True)
    return path


def tree(path: Path) -> list[Path]:
    """`path` and every cgroup below it, deepest first (the order to remove them)."""
    if not path.is_dir():
        return []
    found = [Path(d) for d, _, _ in os.walk(path, topdown=False)]
    return found


def processes(path: Path) -> list[int]:
    """Every process in the cgroup `path` or below it."""
    pids: list[int] = []
    for d in tree(path):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (d / "cgroup.procs").read_text().split()]
    return pids


def _populated(path: Path) -> bool:
    try:
        for line in (path / "cgroup.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() == "1"
    except OSError:
        return False
    return False


def _wait_empty(path: Path, deadline: float) -> bool:
    """Wait until no process is left in `path`'s subtree (cgroup.events says so; the
    kernel signals each change to a poller of that file)."""
    events = path / "cgroup.events"
    try:
        fd = os.open(events, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return not _populated(path)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI | select.POLLERR)
        while _populated(path):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller.poll(int(min(left, 1.0) * 1000))
            os.lseek(fd, 0, os.SEEK_SET)
            os.read(fd, 4096)
        return True
    finally:
        os.close(fd)


def kill(path: Path) -> None:
    """SIGKILL every process in `path`'s subtree (cgroup.kill, else one by one)."""
    if not path.is_dir():
        return
    try:
        (path / "cgroup.kill").write_text("1")
        return
    except OSError:
        pass
    for pid in processes(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove(path: Path, timeout: float = 10.0) -> None:
    """End every process in `path`'s subtree, then remove its directories."""
    if not path.is_dir():
        return
    deadline = time.monotonic() + timeout
    if _populated(path):
        kill(path)
        if not _wait_empty(path, deadline):
            raise CgroupError(f"processes still in {path} after {timeout:g} s")
    for d in tree(path):
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                # A cgroup whose last process is still exiting is busy for a moment.
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise CgroupError(f"cannot remove {d}: {e.strerror}") from None
                if not _wait_empty(d, deadline):
                    raise CgroupError(f"processes still in {d}") from None
                time.sleep(0.01)
