"""SSH connections kept open between one node's steps, so each login is paid once.

Steps 6-8 log in to the same node several times: as the discovered account (to read
sshd's settings, then to secure root) and as root with a platform key (to verify, then
to remove the node key). A handshake costs far more than a command, so the connection
that discovery made is handed on to the next step that logs in the same way, and root's
verifying connection to step 8. A connection that fails is dropped and the next use
connects again; `close(host)` ends a node's connections once its steps are done.
Nothing here is durable: a step resumed in another process simply connects anew.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh

from interlock.ssh.remote import connect

Key = asyncssh.SSHKey | Path


def _fingerprint(key: Key) -> str:
    k = asyncssh.read_private_key(key) if isinstance(key, Path) else key
    return str(k.get_fingerprint())


class Sessions:
    """Open connections by (host, user, key); one process's, for the nodes it works on."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str, str], asyncssh.SSHClientConnection] = {}

    async def open(self, host: str, user: str, key: Key, **kw: Any) -> asyncssh.SSHClientConnection:
        """The kept connection as `user` with `key` (taken: `keep` it again), or a new one
        (`kw`: asyncssh's connect options)."""
        conn = self._open.pop((host, user, _fingerprint(key)), None)
        if conn is not None and not conn.is_closed():
            return conn
        made: asyncssh.SSHClientConnection = await connect(host, user, key, **kw)
        return made

    async def drop(self, host: str, user: str, key: Key) -> None:
        """End the kept connection as `user` with `key`, if any (the next use logs in anew)."""
        conn = self._open.pop((host, user, _fingerprint(key)), None)
        if conn is not None:
            await end(conn)

    async def keep(
        self, host: str, user: str, key: Key, conn: asyncssh.SSHClientConnection
    ) -> None:
        """Keep `conn` for the next use as `user` with `key` on `host`."""
        previous = self._open.pop((host, user, _fingerprint(key)), None)
        if previous is not None and previous is not conn:  # made meanwhile by a parallel use
            await end(previous)
        self._open[(host, user, _fingerprint(key))] = conn

    @asynccontextmanager
    async def use(
        self, host: str, user: str, key: Key, **kw: Any
    ) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """A live connection as `user` with `key`, kept afterwards; one that fails inside
        the block is closed and forgotten (the next use connects again)."""
        conn = await self.open(host, user, key, **kw)
        try:
            yield conn
        except BaseException:
            await end(conn)
            raise
        await self.keep(host, user, key, conn)

    async def close(self, host: str) -> None:
        """End every kept connection to `host` (its steps are done, or it failed)."""
        for name in [n for n in self._open if n[0] == host]:
            await end(self._open.pop(name))

    def __len__(self) -> int:
        return len(self._open)


async def end(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    await conn.wait_closed()
