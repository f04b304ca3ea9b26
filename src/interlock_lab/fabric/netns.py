"""Entering network namespaces from this process, one thread at a time.

A socket stays in the network namespace it was created in, so the lab creates
sockets (and short-lived `ip` processes) inside a node's namespace by switching
the calling thread there and back. Python 3.11 has no os.setns, hence ctypes.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_host_fd: int | None = None


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def host_netns_fd() -> int:
    """A handle on the namespace this process started in (the host's)."""
    global _host_fd
    if _host_fd is None:
        _host_fd = os.open(f"/proc/{os.getpid()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    return _host_fd


def open_netns(pid: int) -> int:
    """A handle that keeps process `pid`'s network namespace reachable."""
    return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)


@contextmanager
def inside(fd: int) -> Iterator[None]:
    """Run the block with this thread in namespace `fd`; always come back."""
    home = host_netns_fd()
    _setns(fd)
    try:
        yield
    finally:
        _setns(home)
