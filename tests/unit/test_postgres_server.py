"""interlock_lab.postgres: a real server from Debian's binaries, loopback only, its password
kept out of every log, and nothing of it left once its context exits (or fails to start)."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from interlock_lab import postgres
from interlock_lab.postgres import PostgresServer, postgres_server


def _can_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root (the server runs as the postgres user)"
    try:
        postgres.find_binaries()
    except RuntimeError as e:
        return str(e)
    return None


needs_server = pytest.mark.skipif(_can_run() is not None, reason=_can_run() or "")


@pytest.fixture
def work() -> Iterator[Path]:
    """A work directory the postgres user can traverse (pytest's tmp_path, under root's
    0700 directory, is not one)."""
    with tempfile.TemporaryDirectory(prefix="interlock-test-pg-") as d:
        os.chmod(d, 0o711)
        yield Path(d)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as s:
        yield s


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def listening(pid: int) -> set[tuple[str, str, int]]:
    """(family, address, port) of the TCP sockets the process listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for family in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{family}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                if family == "tcp":  # little-endian hex
                    address = ".".join(str(b) for b in reversed(bytes.fromhex(address)))
                found.add((family, address, int(port, 16)))
    return found


@needs_server
def test_it_takes_a_connection_and_a_transaction(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "interlock",
            "interlock",
        )
        conn.execute("CREATE TABLE t_tx (n int PRIMARY KEY)")
        conn.commit()
        with conn.transaction():
            conn.execute("INSERT INTO t_tx VALUES (1), (2)")
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute("INSERT INTO t_tx VALUES (3)")
            conn.execute("INSERT INTO t_tx VALUES (1)")  # the whole transaction goes
        assert conn.execute("SELECT array_agg(n ORDER BY n) FROM t_tx").fetchone() == ([1, 2],)
        conn.execute("DROP TABLE t_tx")
        conn.commit()


@needs_server
def test_it_listens_on_loopback_only(server: PostgresServer) -> None:
    assert urlsplit(server.url).hostname == "127.0.0.1"
    assert urlsplit(server.url).port == server.port
    assert listening(server.pid) == {("tcp", "127.0.0.1", server.port)}
    # Its unix socket is in its own data directory, not the host cluster's.
    assert (server.datadir / f".s.PGSQL.{server.port}").is_socket()
    assert not Path(f"/var/run/postgresql/.s.PGSQL.{server.port}").exists()
    with psycopg.connect(server.url) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()
            for name in ("listen_addresses", "fsync", "max_connections", "password_encryption")
        }
    assert settings == {
        "listen_addresses": ("127.0.0.1",),
        "fsync": ("off",),
        "max_connections": ("300",),
        "password_encryption": ("scram-sha-256",),
    }
    # Password authentication: a wrong password is refused.
    wrong = server.url.replace(urlsplit(server.url).password or "", "wrong", 1)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=10).close()


@needs_server
def test_after_the_context_the_server_and_its_data_are_gone(work: Path) -> None:
    with postgres_server(work) as s:
        assert alive(s.pid)
        assert s.datadir.parent.parent == work
        assert s.datadir.stat().st_mode & 0o777 == 0o700
        assert s.datadir.owner() == "postgres"
        assert not (s.datadir.parent / "pwfile").exists()  # the password file went after initdb
    assert not alive(s.pid)
    assert not s.datadir.exists()
    assert list(work.iterdir()) == []


@needs_server
def test_the_password_is_never_logged(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with postgres_server() as s:
        password = urlsplit(s.url).password or ""
        assert len(password) >= 20
        with psycopg.connect(s.url) as conn:
            conn.execute("SELECT 1")
        server_log = (s.datadir.parent / "postgres.log").read_text()
        shown = repr(s) + str(s)
    assert caplog.records  # it did log (its start), so the check below checks something
    out, err = capfd.readouterr()
    leaked = [
        where
        for where, text in {
            "logging": caplog.text,
            "stdout": out,
            "stderr": err,
            "server log": server_log,
            "repr": shown,
        }.items()
        if password in text
    ]
    assert not leaked, f"the password appeared in: {leaked}"


@needs_server
def test_a_failed_start_leaves_nothing(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []

    def fail(password: str, port: int, proc: subprocess.Popen[bytes]) -> None:
        started.append(proc.pid)
        raise RuntimeError("no database for you")

    monkeypatch.setattr(postgres, "_create_database", fail)
    with pytest.raises(RuntimeError, match="no database for you"), postgres_server(work):
        pass
    assert started and not alive(started[0])
    assert list(work.iterdir()) == []


@needs_server
def test_a_work_directory_postgres_cannot_reach_is_refused(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    with pytest.raises(RuntimeError, match="cannot reach"), postgres_server(hidden):
        pass
    assert list(hidden.iterdir()) == []


def test_without_binaries_it_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "BIN_GLOB", "/nonexistent/postgresql/*/bin")
    with pytest.raises(RuntimeError, match="postgresql-15"):
        postgres.find_binaries()
