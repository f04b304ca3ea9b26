"""The results store: every conformance run's JSON report, kept with its history, and
comparisons between two runs or two sites."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from interlock.errors import ExitCode, InterlockError
from interlock.state.sql import conform_runs, connect
from interlock.state.url import StateUrl

runs = conform_runs


class Results:
    """Conformance reports in the state database (beside the nodes and learned facts)."""

    def __init__(self, url: StateUrl) -> None:
        self._engine = connect(url)

    def save(self, report: dict[str, Any]) -> None:
        run = report["run"]
        with self._engine.begin() as c:
            c.execute(runs.insert().values(
                id=run["id"], started=run["started"], guideline=run["guideline"],
                sites=",".join(report["sites"]), report=json.dumps(report),
            ))  # fmt: skip

    def _rows(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        with self._engine.connect() as c:
            return list(c.execute(query).all())

    def history(self) -> list[dict[str, Any]]:
        out = []
        for r in self._rows(sa.select(runs).order_by(runs.c.started.desc())):
            verdicts = {s: d["verdict"] for s, d in json.loads(r.report)["sites"].items()}
            out.append({"id": r.id, "started": r.started, "guideline": r.guideline,
                        "sites": r.sites.split(","), "verdicts": verdicts})  # fmt: skip
        return out

    def get(self, run_id: str) -> dict[str, Any]:
        query = sa.select(runs.c.report)
        if run_id == "latest":
            query = query.order_by(runs.c.started.desc()).limit(1)
        else:
            query = query.where(runs.c.id == run_id)
        rows = self._rows(query)
        if not rows:
            raise InterlockError(f"no conformance run {run_id!r}", ExitCode.NOT_RUNNING)
        report: dict[str, Any] = json.loads(rows[0].report)
        return report

    def latest_with(self, site: str) -> dict[str, Any]:
        for run in self.history():
            if site in run["sites"]:
                return self.get(run["id"])
        raise InterlockError(f"no conformance run covers site {site!r}", ExitCode.NOT_RUNNING)

    def close(self) -> None:
        self._engine.dispose()


def compare(a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Capability by capability: the verdicts of two (label, site report) pairs."""
    (la, sa), (lb, sb) = a, b
    out = []
    for cid in dict.fromkeys([*sa["capabilities"], *sb["capabilities"]]):
        va = sa["capabilities"].get(cid, {}).get("verdict")
        vb = sb["capabilities"].get(cid, {}).get("verdict")
        out.append({"capability": cid, la: va, lb: vb, "same": va == vb})
    return out
