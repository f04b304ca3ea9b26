"""The ledger: every resource a lab site created and released.

Tests and `interlock lab status` read it to show that nothing is outstanding.
One SQLite file per lab run; writers are the API threads and the event loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from pydantic import BaseModel

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    rid TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    released REAL,
    PRIMARY KEY (site, kind, rid, created)
);
"""


class Entry(BaseModel):
    site: str
    kind: str
    rid: str
    detail: str
    created: float
    released: float | None


class Ledger:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def created(self, site: str, kind: str, rid: str, detail: str = "") -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO resources (site, kind, rid, detail, created) VALUES (?, ?, ?, ?, ?)",
                (site, kind, rid, detail, time.time()),
            )

    def released(self, site: str, kind: str, rid: str) -> None:
        """Mark the open entry for (site, kind, rid) released; a no-op if none is open."""
        with self._lock:
            self._db.execute(
                "UPDATE resources SET released = ? "
                "WHERE site = ? AND kind = ? AND rid = ? AND released IS NULL",
                (time.time(), site, kind, rid),
            )

    def is_open(self, site: str, kind: str, rid: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM resources WHERE site = ? AND kind = ? AND rid = ? "
                "AND released IS NULL",
                (site, kind, rid),
            ).fetchone()
        return row is not None

    def entries(self, site: str | None = None, outstanding: bool = False) -> list[Entry]:
        sql = "SELECT site, kind, rid, detail, created, released FROM resources WHERE 1=1"
        args: list[str] = []
        if site is not None:
            sql += " AND site = ?"
            args.append(site)
        if outstanding:
            sql += " AND released IS NULL"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created", args).fetchall()
        return [
            Entry(site=r[0], kind=r[1], rid=r[2], detail=r[3], created=r[4], released=r[5])
            for r in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()
