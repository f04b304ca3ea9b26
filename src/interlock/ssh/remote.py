"""Running things on a node over SSH (asyncssh): connect, run, as root, retry until a deadline."""

from __future__ import annotations

import asyncio
import shlex
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

CONNECT_TIMEOUT = 5.0
# A node that is busy (hundreds of logins at once on a small host) may take longer than
# CONNECT_TIMEOUT to answer: work that is safe to repeat connects again for this long.
BUSY_FOR = 120.0
BUSY = (OSError, asyncssh.ConnectionLost)  # TimeoutError is an OSError
# Handshakes under way at once, per event loop. A login's key exchange is CPU at both
# ends: 700 at once on a 2-core host each took longer than CONNECT_TIMEOUT, timed out and
# were tried again, and no login got through for minutes. A turn's wait is not timed.
HANDSHAKES = 32
T = TypeVar("T")
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


class AccessError(RuntimeError):
    """A step's SSH work failed; the message is one line for the user."""


async def connect(
    host: str, user: str, key: asyncssh.SSHKey | Path, **kw: Any
) -> asyncssh.SSHClientConnection:
    """A logged-in connection (`async with` it to close it), made in one of the loop's
    HANDSHAKES turns; `kw`: asyncssh's options (no host key check unless `known_hosts`)."""
    kw.setdefault("preferred_auth", "publickey")
    kw.setdefault("known_hosts", None)
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop) or _turns.setdefault(loop, asyncio.Semaphore(HANDSHAKES))
    async with turns:
        conn: asyncssh.SSHClientConnection = await asyncssh.connect(
            host,
            username=user,
            client_keys=[key],
            agent_path=None,
            connect_timeout=CONNECT_TIMEOUT,
            **kw,
        )
        return conn


async def run(conn: asyncssh.SSHClientConnection, command: str, what: str) -> str:
    done = await conn.run(command, check=False)
    if done.exit_status != 0:
        err = str(done.stderr or done.stdout).strip().splitlines()
        raise AccessError(f"{what} failed: {err[-1] if err else f'exit {done.exit_status}'}")
    return str(done.stdout)


def as_root(user: str, script: str) -> str:
    wrapped = f"sh -c {shlex.quote(script)}"
    return wrapped if user == "root" else f"sudo -n {wrapped}"


async def until(
    deadline: float,
    what: str,
    attempt: Callable[[], Awaitable[T]],
    retry_on: tuple[type[BaseException], ...] = (OSError, asyncssh.Error),
) -> T:
    """`attempt` again while the node is not ready for it (connection or SSH errors: sshd
    reloading, a key not there yet), soon at first (a reload's gap is milliseconds) and
    then every 0.2 s; past `deadline`, one line naming `what`."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        stop=lambda _: time.monotonic() > deadline,
        wait=wait_exponential(multiplier=0.01, max=0.2),
        reraise=True,
    )
    try:
        async for tried in retrying:
            with tried:
                return await attempt()
    except retry_on as e:
        raise AccessError(f"{what}: {str(e) or type(e).__name__}") from None
    raise AssertionError("unreachable: tenacity returns or raises")
