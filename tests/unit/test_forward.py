"""A public address's piped connections: what goes in comes out, and a connection that
both ends have finished gives back its sockets (the lab serves a thousand nodes' SSH
sessions through one process's file descriptors)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os

import pytest

from interlock_lab.fabric import netns
from interlock_lab.fabric.forward import Forwarder, Target

PUBLIC = ipaddress.IPv4Address("127.77.0.1")
PRIVATE = ipaddress.IPv4Address("127.77.0.2")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="entering a namespace needs root")


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers with what it got once the client has finished sending, then closes."""
    writer.write(await reader.read())
    await writer.drain()
    writer.close()


async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speaks first and hangs up, as sshd does when it refuses a client."""
    writer.write(b"bye\n")
    await writer.drain()
    writer.close()


async def through_forwarder(handler: object, client_sends: bytes) -> tuple[bytes, int, int]:
    """Pipes one connection through a public address; the reply and the socket counts
    before and after (the forwarder's listener included in both)."""
    server = await asyncio.start_server(handler, str(PRIVATE), 0)  # type: ignore[arg-type]
    port = server.sockets[0].getsockname()[1]
    forwarder = Forwarder()
    await forwarder.point(PUBLIC, [port], Target("n-1", netns.host_netns_fd(), PRIVATE))
    try:
        before = open_sockets()
        reader, writer = await asyncio.open_connection(str(PUBLIC), port)
        writer.write(client_sends)
        if writer.can_write_eof():
            writer.write_eof()
        reply = await reader.read()
        writer.close()
        await writer.wait_closed()
        # The forwarder's piping task ends once both halves are closed.
        pending = set(forwarder._tasks)
        if pending:
            await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
        after = open_sockets()
    finally:
        await forwarder.close()
        server.close()
        await server.wait_closed()
    return reply, before, after


def test_a_connection_both_ends_finish_gives_its_sockets_back() -> None:
    reply, before, after = asyncio.run(through_forwarder(echo, b"hello"))
    assert reply == b"hello"
    assert after == before


def test_a_server_that_hangs_up_first_gives_its_sockets_back() -> None:
    reply, before, after = asyncio.run(through_forwarder(greeter, b""))
    assert reply == b"bye\n"
    assert after == before
