"""The results store: every conformance run's JSON report, kept with its history, and
comparisons between two runs or two sites."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from interlock.errors import ExitCode, InterlockError

SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, started REAL NOT NULL, guideline TEXT NOT NULL,
    sites TEXT NOT NULL, report TEXT NOT NULL)"""


class Results:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute(SCHEMA)

    def save(self, report: dict[str, Any]) -> None:
        run = report["run"]
        self._db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
            (run["id"], run["started"], run["guideline"], ",".join(report["sites"]),
             json.dumps(report)),
        )  # fmt: skip

    def history(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, started, guideline, sites, report FROM runs ORDER BY started DESC"
        ).fetchall()
        out = []
        for rid, started, guideline, sites, report in rows:
            verdicts = {s: d["verdict"] for s, d in json.loads(report)["sites"].items()}
            out.append({"id": rid, "started": started, "guideline": guideline,
                        "sites": sites.split(","), "verdicts": verdicts})  # fmt: skip
        return out

    def get(self, run_id: str) -> dict[str, Any]:
        if run_id == "latest":
            row = self._db.execute(
                "SELECT report FROM runs ORDER BY started DESC LIMIT 1"
            ).fetchone()
        else:
            row = self._db.execute("SELECT report FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise InterlockError(f"no conformance run {run_id!r}", ExitCode.NOT_RUNNING)
        report: dict[str, Any] = json.loads(row[0])
        return report

    def latest_with(self, site: str) -> dict[str, Any]:
        for run in self.history():
            if site in run["sites"]:
                return self.get(run["id"])
        raise InterlockError(f"no conformance run covers site {site!r}", ExitCode.NOT_RUNNING)

    def close(self) -> None:
        self._db.close()


def compare(a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Capability by capability: the verdicts of two (label, site report) pairs."""
    (la, sa), (lb, sb) = a, b
    out = []
    for cid in dict.fromkeys([*sa["capabilities"], *sb["capabilities"]]):
        va = sa["capabilities"].get(cid, {}).get("verdict")
        vb = sb["capabilities"].get(cid, {}).get("verdict")
        out.append({"capability": cid, la: va, lb: vb, "same": va == vb})
    return out
