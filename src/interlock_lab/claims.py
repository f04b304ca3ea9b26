"""The lab's share of this machine's loopback: address blocks and ports, claimed so that
several labs (a user's, a test suite's, two test suites') run side by side.

Every running lab holds a record in `/run/interlock-lab/` (one JSON file per lab) that
its lab process keeps locked with flock(2) for its whole life. The kernel drops that
lock when the process ends, however it ends, so a dead lab's claims are free again
without anyone cleaning up. Claiming happens under a lock on the directory, so two
labs starting at once never take the same block.

A block (or port) is taken when a live lab holds it, when another block of the same
claim overlaps it, or when anything on this machine already listens in it (a lab of
an older version, other software). A wanted block that is taken moves to the next
free block of the same size; a wanted port to the next free port.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# The host's own loopback services live here (127.0.0.1): never given to a lab's block.
RESERVED = ipaddress.IPv4Network("127.0.0.0/16")
PORT_SEARCH = 1000  # how far past a wanted port to look for a free one


def registry_dir() -> Path:
    """Where labs record their claims: tmpfs, so a reboot forgets them all."""
    return Path(os.environ.get("INTERLOCK_LAB_CLAIMS", "/run/interlock-lab"))


@dataclass(frozen=True)
class LabAddresses:
    """What the lab claimed of this machine's loopback for its shared services."""

    services: str = "127.60.0.1"  # the lab's OpenStack listens here
    epmd_port: int = 14369  # RabbitMQ's epmd (which listens on 127.0.0.1 too)


class ClaimError(RuntimeError):
    """No free block or port was left for what a lab wants."""


@dataclass
class Claims:
    """What one lab holds, for as long as its process lives (or until `release`)."""

    blocks: dict[str, ipaddress.IPv4Network]
    ports: dict[str, int]
    wanted: dict[str, ipaddress.IPv4Network] = field(default_factory=dict)
    record: Path | None = None
    fd: int = -1

    def moved(self) -> dict[str, tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]]:
        """Blocks not given as wanted: name -> (wanted, given)."""
        return {
            name: (self.wanted[name], given)
            for name, given in self.blocks.items()
            if name in self.wanted and self.wanted[name] != given
        }

    def release(self) -> None:
        """Give everything back: the record goes, and the directory if it is empty."""
        if self.fd < 0 or self.record is None:
            return
        with _registry(self.record.parent):
            self.record.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(OSError):  # other labs' records, or the directory's lock
                self.record.parent.rmdir()


def claim(
    owner: Path,
    blocks: dict[str, ipaddress.IPv4Network],
    ports: dict[str, int],
    directory: Path | None = None,
) -> Claims:
    """Claim `blocks` and `ports` (name -> wanted) for the lab in `owner`, each as wanted
    or moved to the nearest free one. Held until `release` or until this process ends."""
    directory = directory or registry_dir()
    with _registry(directory):
        held_blocks, held_ports = _held_by_others(directory, owner)
        listening = _listeners()
        given: dict[str, ipaddress.IPv4Network] = {}
        for name, want in blocks.items():
            taken = [*held_blocks, *given.values()]
            given[name] = _free_block(name, want, taken, listening)
        given_ports: dict[str, int] = {}
        for name, port in ports.items():
            taken_ports = {*held_ports, *given_ports.values()}
            given_ports[name] = _free_port(name, port, taken_ports, listening)
        record = directory / f"{_digest(owner)}.json"
        fd = os.open(record, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        body = {
            "dir": str(owner),
            "pid": os.getpid(),
            "blocks": {k: str(v) for k, v in given.items()},
            "ports": given_ports,
        }
        os.write(fd, json.dumps(body, indent=1).encode())
        return Claims(given, given_ports, dict(blocks), record, fd)


def others(directory: Path | None = None) -> list[dict[str, object]]:
    """The records of the labs running now (for status and tests)."""
    directory = directory or registry_dir()
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        if _is_held(path):
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads(path.read_text()))
    return found


# -- the registry ----------------------------------------------------------------


@contextlib.contextmanager
def _registry(directory: Path) -> Iterator[None]:
    """The registry directory, locked; made if missing. A directory removed by the
    last lab while we waited for its lock is made again."""
    while True:
        directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(directory).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield
                return
        finally:
            os.close(fd)


def _digest(owner: Path) -> str:
    return hashlib.sha256(str(owner.absolute()).encode()).hexdigest()[:16]


def _is_held(path: Path) -> bool:
    """Is `path` locked by a live lab? (A record nobody locks is a dead lab's.)"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
    return False


def _held_by_others(directory: Path, owner: Path) -> tuple[list[ipaddress.IPv4Network], set[int]]:
    blocks: list[ipaddress.IPv4Network] = []
    ports: set[int] = set()
    mine = directory / f"{_digest(owner)}.json"
    for path in directory.glob("*.json"):
        if not _is_held(path):
            path.unlink(missing_ok=True)  # a dead lab's
            continue
        if path == mine:
            raise ClaimError(f"a lab already runs from {owner}")
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written by a lab that holds the registry lock: impossible here
        blocks += [ipaddress.IPv4Network(b) for b in body.get("blocks", {}).values()]
        ports |= {int(p) for p in body.get("ports", {}).values()}
    return blocks, ports


# -- choosing ----------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    address: ipaddress.IPv4Address | None  # None: every address (0.0.0.0 or ::)
    port: int


def _listeners() -> list[Listener]:
    """TCP sockets listening on this machine (network namespace), from /proc/net."""
    found: list[Listener] = []
    for table, wildcard in (("tcp", "00000000"), ("tcp6", "0" * 32)):
        with contextlib.suppress(OSError):
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
            for line in lines:
                fields = line.split()
                if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
                    continue
                addr, port = fields[1].split(":")
                if addr == wildcard:
                    found.append(Listener(None, int(port, 16)))
                elif table == "tcp":
                    ip = ipaddress.IPv4Address(bytes.fromhex(addr)[::-1])
                    found.append(Listener(ip, int(port, 16)))
    return found


def _free_block(
    name: str,
    want: ipaddress.IPv4Network,
    taken: Iterable[ipaddress.IPv4Network],
    listening: list[Listener],
) -> ipaddress.IPv4Network:
    """`want` if it is free, else the first free block of its size above it (wrapping
    round 127.0.0.0/8). Works on address ranges, jumping past whatever is in the way."""
    size = want.num_addresses
    low, high = int(LOOPBACK.network_address), int(LOOPBACK.broadcast_address) + 1
    ranges = [(int(t.network_address), int(t.broadcast_address) + 1) for t in taken]
    ranges.append((int(RESERVED.network_address), int(RESERVED.broadcast_address) + 1))
    ranges += [
        (int(ln.address), int(ln.address) + 1)
        for ln in listening
        if ln.address is not None and ln.address in LOOPBACK
    ]
    for begin, stop in ((int(want.network_address), high), (low, int(want.network_address))):
        base = begin
        while base + size <= stop:
            blocking = [e for s, e in ranges if s < base + size and base < e]
            if not blocking:
                return ipaddress.IPv4Network((base, want.prefixlen))
            end = max(blocking)
            base = -(-end // size) * size  # the next aligned block past what is in the way
    raise ClaimError(f"{name}: no free /{want.prefixlen} is left in 127.0.0.0/8")


def _free_port(name: str, want: int, taken: set[int], listening: list[Listener]) -> int:
    loopback = ipaddress.IPv4Address("127.0.0.1")
    busy = {ln.port for ln in listening if ln.address in (None, loopback)}
    for port in range(want, min(want + PORT_SEARCH, 65536)):
        if port not in taken and port not in busy:
            return port
    raise ClaimError(f"{name}: no free port from {want} to {want + PORT_SEARCH - 1}")
