"""A real PostgreSQL server for tests and benchmarks: Debian's package binaries
(postgresql-15), a data directory of its own, loopback only, stopped and removed afterwards.

    with postgres_server() as server:
        engine = connect(server.url)  # postgresql://interlock:<password>@127.0.0.1:<port>/interlock

Layout: a fresh temporary directory (in `work`, else the system's temporary directory;
mode 0700, owned by the user the server runs as) holding
    data/          the data directory (initdb's, mode 0700); its unix socket is in it too
    postgres.log   the server's output
and, during initdb only, the superuser's password file (mode 0600). All of it goes when the
context exits, whether the server came up or not.

Postgres refuses to run as root: as root, initdb, the server and pg_ctl run as the `postgres`
system user (Debian's package creates it); otherwise as the caller. Settings are for tests,
not production: no fsync, no synchronous commit, no full-page writes, 300 connections (several
workers, each with its own pool). The password is in `url` only: never logged, never in a repr.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

PACKAGE = "postgresql-15"  # Debian's: the binaries in /usr/lib/postgresql/15/bin
BIN_GLOB = "/usr/lib/postgresql/*/bin"
USER = "interlock"  # the superuser, and its database
SYSTEM_USER = "postgres"  # who the server runs as when we are root
HOST = "127.0.0.1"
SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
PORT_ATTEMPTS = 5  # a port picked free may be taken before the server binds it
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its NUL


@dataclass(frozen=True)
class PostgresServer:
    url: str = field(repr=False)  # carries the password
    port: int
    pid: int  # the postmaster's
    datadir: Path


def find_binaries() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with a server and initdb in it."""
    found = []
    for path in Path("/").glob(BIN_GLOB.lstrip("/")):
        version = path.parent.name
        if all((path / b).is_file() for b in ("postgres", "initdb", "pg_ctl")):
            key = tuple(int(n) for n in re.findall(r"\d+", version))
            found.append((key, path))
    if not found:
        raise RuntimeError(
            f"no PostgreSQL server binaries in {BIN_GLOB}: "
            f"install Debian's package {PACKAGE} (apt-get install {PACKAGE}, or ./install.sh)"
        )
    return max(found)[1]


@dataclass(frozen=True)
class _Runner:
    """Runs the server's programs as the user the server runs as."""

    uid: int | None  # None: as ourselves
    gid: int | None
    home: str

    @classmethod
    def for_current_user(cls) -> _Runner:
        if os.geteuid() != 0:
            return cls(None, None, os.path.expanduser("~"))
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise RuntimeError(
                f"PostgreSQL refuses to run as root, and there is no {SYSTEM_USER!r} user to "
                f"run it as: install Debian's package {PACKAGE}"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def kwargs(self, cwd: Path) -> dict[str, Any]:
        # Nothing of the caller's libpq settings (PGDATA, PGPORT, PGPASSWORD...) leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(HOME=self.home, LC_ALL="C")
        if self.uid is None:
            return {"cwd": cwd, "env": env}
        env.update(USER=SYSTEM_USER, LOGNAME=SYSTEM_USER)
        return {"cwd": cwd, "env": env, "user": self.uid, "group": self.gid, "extra_groups": []}

    def run(
        self, argv: Sequence[str | Path], cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self.kwargs(cwd),
        )


def free_port() -> int:
    """A loopback port free right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _url(password: str, port: int, database: str) -> str:
    return f"postgresql://{USER}:{password}@{HOST}:{port}/{database}"


def _tail(path: Path, start: int = 0, lines: int = 20) -> str:
    """The last lines of a log, from byte `start` on."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def postgres_server(work: Path | None = None) -> Iterator[PostgresServer]:
    """A running server with superuser and database `interlock`; stopped and removed after."""
    bindir = find_binaries()
    runner = _Runner.for_current_user()
    top = Path(tempfile.mkdtemp(prefix="interlock-postgres-", dir=work))
    try:
        with ExitStack() as stack:
            runner.chown(top)
            if runner.run(["test", "-w", top], cwd=Path("/"), timeout=10).returncode != 0:
                who = SYSTEM_USER if runner.uid is not None else "current"
                raise RuntimeError(
                    f"the {who} user cannot reach {top.parent} (a parent directory "
                    "denies it): give the server a work directory it can traverse"
                )
            datadir = top / "data"
            if len(str(datadir / ".s.PGSQL.65535")) > SOCKET_PATH_MAX:
                raise RuntimeError(
                    f"{datadir} is too long a path for the server's unix socket: "
                    "give it a shorter work directory"
                )
            password = secrets.token_urlsafe(24)
            _initdb(bindir, runner, top, datadir, password)
            proc, port = _start(bindir, runner, top, datadir, stack)
            _create_database(password, port, proc)
            server = PostgresServer(_url(password, port, USER), port, proc.pid, datadir)
            log.info(
                "PostgreSQL %s started on %s:%d (pid %d, data %s)",
                bindir.parent.name,
                HOST,
                port,
                proc.pid,
                datadir,
            )
            yield server
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _initdb(bindir: Path, runner: _Runner, top: Path, datadir: Path, password: str) -> None:
    pwfile = top / "pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        runner.chown(pwfile)
        done = runner.run(
            [
                bindir / "initdb",
                "--pgdata",
                datadir,
                "--username",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # tests: nothing here needs to survive a crash
            ],
            cwd=top,
            timeout=120,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _start(
    bindir: Path, runner: _Runner, top: Path, datadir: Path, stack: ExitStack
) -> tuple[subprocess.Popen[bytes], int]:
    """The postmaster, on a free loopback port, accepting connections.

    Started as our child (not through `pg_ctl start`, whose postmaster is nobody's child):
    we reap it, so its pid is gone once it has stopped.
    """
    logfile = top / "postgres.log"
    settings = {**SETTINGS, "unix_socket_directories": f'"{datadir}"'}
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        argv = [str(bindir / "postgres"), "-D", str(datadir), "-p", str(port)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        with logfile.open("ab") as out:
            start = out.tell()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C to the tests is not a fast shutdown of it
                **runner.kwargs(top),
            )
        stack.callback(_stop, bindir, runner, top, datadir, proc)
        if _wait_ready(datadir, proc):
            return proc, port
        text = _tail(logfile, start)
        if "could not bind" in text and attempt < PORT_ATTEMPTS:
            log.debug("port %d was taken before the server bound it: another one", port)
            continue
        raise RuntimeError(f"PostgreSQL did not start (exit status {proc.returncode}):\n{text}")
    raise AssertionError("unreachable")


def _wait_ready(datadir: Path, proc: subprocess.Popen[bytes]) -> bool:
    """Until the postmaster says it is ready (its pid file's status line, as pg_ctl and
    pg_isready go by); False if it exits first. Waits on the process between looks."""
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.005
    while time.monotonic() < deadline:
        try:
            lines = (datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            lines = []
        if len(lines) >= 8 and lines[0].strip() == str(proc.pid) and lines[7].strip() == "ready":
            return True
        try:
            proc.wait(timeout=delay)
            return False
        except subprocess.TimeoutExpired:
            delay = min(delay * 2, 0.1)
    raise RuntimeError(f"PostgreSQL was not ready within {START_TIMEOUT:.0f}s")


def _create_database(password: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    # The first connection also proves the server takes ours (over TCP, with the password).
    try:
        with psycopg.connect(
            _url(password, port, "postgres"), autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute(f'CREATE DATABASE "{USER}"')
    except psycopg.Error as e:
        # psycopg's messages name host, port and user, never the password.
        raise RuntimeError(f"PostgreSQL (pid {proc.pid}) took no connection: {e}") from None


def _stop(
    bindir: Path, runner: _Runner, top: Path, datadir: Path, proc: subprocess.Popen[bytes]
) -> None:
    """`pg_ctl stop -m fast`; if that fails, the same signal (SIGINT) to this postmaster, then
    SIGKILL: to its pid only. Reaped either way."""
    if proc.poll() is None:
        wait = str(int(STOP_TIMEOUT))
        try:
            done = runner.run(
                [bindir / "pg_ctl", "stop", "-D", datadir, "-m", "fast", "-w", "-t", wait],
                cwd=top,
                timeout=STOP_TIMEOUT + 10,
            )
            if done.returncode != 0:
                log.warning("pg_ctl stop failed: %s", (done.stdout + done.stderr).strip())
        except subprocess.TimeoutExpired:
            log.warning("pg_ctl stop did not return")
        for how in (signal.SIGINT, signal.SIGKILL):
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                log.warning("PostgreSQL (pid %d) still runs: %s to it", proc.pid, how.name)
                proc.send_signal(how)
    proc.wait()
