"""Public addresses: host loopback addresses forwarded into nodes' namespaces.

A public address is a set of TCP listeners on a host loopback address (one per
forwarded port). Each accepted connection is piped to the node's private
address through a socket created inside the node's network namespace: the
1:1 NAT of a cloud's public or floating IP. Pointing an address at another
node is live: connections to the old node are cut, as a real re-association
cuts them, and new ones reach the new node.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from interlock_lab.fabric import netns

LOG = logging.getLogger(__name__)


class Guard(Protocol):
    """A site's firewall as its API holds it, asked once per new connection."""

    async def admits(self, node_id: str, port: int, source: ipaddress.IPv4Address) -> bool: ...


@dataclass(frozen=True)
class Target:
    node_id: str
    netns: int
    private_ip: ipaddress.IPv4Address
    guard: Guard | None = field(default=None, compare=False)


class _Half(asyncio.Protocol):
    """One side of a piped connection; writes what it reads to its peer."""

    def __init__(self, on_made: Callable[[_Half], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.got_eof = False  # the other end has finished sending
        self._on_made = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        if self.peer and self.peer.transport:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.got_eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.got_eof:
            # Both ways are finished: close both, or their sockets stay open for good
            # (a thousand nodes' SSH sessions used up the lab's file descriptors).
            if peer is not None and peer.transport is not None:
                peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.peer and self.peer.transport:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer and self.peer.transport:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer and self.peer.transport:
            self.peer.transport.close()
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self) -> None:
        if self.transport:
            self.transport.abort()


@dataclass
class _Address:
    ip: ipaddress.IPv4Address
    target: Target
    servers: list[asyncio.Server] = field(default_factory=list)
    live: set[_Half] = field(default_factory=set)

    def cut(self) -> None:
        for half in list(self.live):
            half.abort()
        self.live.clear()


class Forwarder:
    """All public addresses of the lab, each pointed at one node."""

    def __init__(self) -> None:
        self._addresses: dict[ipaddress.IPv4Address, _Address] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def target_of(self, ip: ipaddress.IPv4Address) -> Target | None:
        a = self._addresses.get(ip)
        return a.target if a else None

    def addresses(self) -> dict[ipaddress.IPv4Address, Target]:
        return {ip: a.target for ip, a in self._addresses.items()}

    async def point(self, ip: ipaddress.IPv4Address, ports: list[int], target: Target) -> None:
        """Make `ip` reach `target` on `ports` (binding it if needed)."""
        current = self._addresses.get(ip)
        if current is not None:
            if current.target != target:
                current.cut()
                current.target = target
            return
        address = _Address(ip, target)
        loop = asyncio.get_running_loop()
        try:
            for port in ports:
                server = await loop.create_server(
                    lambda port=port: self._accept(address, port),  # type: ignore[misc]
                    host=str(ip),
                    port=port,
                    reuse_address=True,
                )
                address.servers.append(server)
        except OSError as e:
            for server in address.servers:
                server.close()
            raise OSError(e.errno, f"cannot listen on {ip}: {e.strerror}") from None
        self._addresses[ip] = address

    async def unpoint(self, ip: ipaddress.IPv4Address) -> None:
        """Stop answering on `ip`: listeners closed, connections cut."""
        address = self._addresses.pop(ip, None)
        if address is None:
            return
        for server in address.servers:
            server.close()
        address.cut()
        for server in address.servers:
            await server.wait_closed()

    async def unpoint_node(self, node_id: str) -> None:
        for ip, a in list(self._addresses.items()):
            if a.target.node_id == node_id:
                await self.unpoint(ip)

    async def close(self) -> None:
        for ip in list(self._addresses):
            await self.unpoint(ip)
        for task in list(self._tasks):
            task.cancel()

    def _accept(self, address: _Address, port: int) -> _Half:
        def made(client: _Half) -> None:
            assert client.transport is not None
            client.transport.pause_reading()
            task = asyncio.get_running_loop().create_task(self._connect(address, port, client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return _Half(made)

    async def _connect(self, address: _Address, port: int, client: _Half) -> None:
        assert client.transport is not None
        target = address.target
        loop = asyncio.get_running_loop()
        if target.guard is not None and not await _admitted(target, port, client.transport):
            _reset(client.transport)
            return
        with netns.inside(target.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (str(target.private_ip), port))
        except OSError:
            # Nothing listens there (booting, or not a served port): reset, like a
            # closed port behind a cloud's NAT answers.
            sock.close()
            _reset(client.transport)
            return
        upstream = _Half()
        _, _ = await loop.create_connection(lambda: upstream, sock=sock)
        if address.target != target or client.transport.is_closing():
            upstream.abort()
            client.abort()
            return
        client.peer, upstream.peer = upstream, client
        address.live.update((client, upstream))
        client.transport.resume_reading()
        await client.closed
        await upstream.closed
        address.live.discard(client)
        address.live.discard(upstream)


async def _admitted(target: Target, port: int, transport: asyncio.Transport) -> bool:
    assert target.guard is not None
    peer = transport.get_extra_info("peername")
    source = ipaddress.IPv4Address(peer[0])
    try:
        ok = await target.guard.admits(target.node_id, port, source)
    except Exception:  # the API could not say: closed, as a firewall without rules is
        LOG.exception("firewall of %s: no answer; %s:%d refused", target.node_id, source, port)
        return False
    if not ok:
        LOG.info("firewall of %s: %s to port %d refused", target.node_id, source, port)
    return ok


def _reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
