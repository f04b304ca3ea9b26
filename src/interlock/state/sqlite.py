"""The SQLite store: interlock's embedded state (nodes, learned facts, metal claims)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from interlock.state.records import DeploymentRecord, Fact, NodeRecord, NodeRoleRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    data TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS facts (
    site TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    evidence TEXT NOT NULL,
    learned REAL NOT NULL,
    PRIMARY KEY (site, key)
);
CREATE TABLE IF NOT EXISTS node_roles (
    node TEXT NOT NULL,
    role TEXT NOT NULL,
    deployment TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (node, role)
);
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    site TEXT NOT NULL,
    machine TEXT NOT NULL,
    node TEXT NOT NULL,
    PRIMARY KEY (site, machine)
);
"""


class SqliteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        # Only the first opener sets WAL and the schema: done again while another process
        # writes (`interlock ls` during `interlock up`), either can fail at once with
        # "database is locked" (SQLite skips the busy handler for them).
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode=WAL")
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if not {"nodes", "facts", "claims", "node_roles", "deployments"} <= tables:
            self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def _q(self, sql: str, *args: Any) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- nodes
    def put(self, node: NodeRecord) -> None:
        self._q(
            "INSERT INTO nodes (name, deployment, data, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET data = excluded.data, updated = excluded.updated",
            node.name,
            node.deployment,
            node.model_dump_json(),
            time.time(),
        )

    def get(self, name: str) -> NodeRecord | None:
        rows = self._q("SELECT data FROM nodes WHERE name = ?", name)
        return NodeRecord.model_validate_json(rows[0][0]) if rows else None

    def update(self, name: str, **changes: Any) -> NodeRecord:
        with self._lock:
            row = self._db.execute("SELECT data FROM nodes WHERE name = ?", (name,)).fetchone()
            node = NodeRecord.model_validate_json(row[0])
            step = changes.get("step")
            if step and step not in node.timeline:
                changes["timeline"] = {**node.timeline, step: time.time()}
            # Validated as a whole: a wrong field or type fails here, not in a later reader.
            node = NodeRecord.model_validate({**node.model_dump(), **changes})
            self._db.execute(
                "UPDATE nodes SET data = ?, updated = ? WHERE name = ?",
                (node.model_dump_json(), time.time(), name),
            )
        return node

    def nodes(self, deployment: str | None = None) -> list[NodeRecord]:
        if deployment is None:
            rows = self._q("SELECT data FROM nodes ORDER BY name")
        else:
            rows = self._q("SELECT data FROM nodes WHERE deployment = ? ORDER BY name", deployment)
        return [NodeRecord.model_validate_json(r[0]) for r in rows]

    def forget(self, name: str) -> None:
        self._q("DELETE FROM nodes WHERE name = ?", name)

    # -- node-roles and deployments
    def put_role(self, nr: NodeRoleRecord) -> None:
        self._q(
            "INSERT INTO node_roles (node, role, deployment, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(node, role) DO UPDATE SET data = excluded.data",
            nr.node,
            nr.role,
            nr.deployment,
            nr.model_dump_json(),
        )

    def update_role(self, node: str, role: str, **changes: Any) -> NodeRoleRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM node_roles WHERE node = ? AND role = ?", (node, role)
            ).fetchone()
            nr = NodeRoleRecord.model_validate({**json.loads(row[0]), **changes})
            self._db.execute(
                "UPDATE node_roles SET data = ? WHERE node = ? AND role = ?",
                (nr.model_dump_json(), node, role),
            )
        return nr

    def roles(self, deployment: str) -> list[NodeRoleRecord]:
        rows = self._q(
            "SELECT data FROM node_roles WHERE deployment = ? ORDER BY node, role", deployment
        )
        return [NodeRoleRecord.model_validate_json(r[0]) for r in rows]

    def forget_role(self, node: str, role: str) -> None:
        self._q("DELETE FROM node_roles WHERE node = ? AND role = ?", node, role)

    def put_deployment(self, d: DeploymentRecord) -> None:
        self._q(
            "INSERT INTO deployments (name, data) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET data = excluded.data",
            d.name,
            d.model_dump_json(),
        )

    def deployment(self, name: str) -> DeploymentRecord | None:
        rows = self._q("SELECT data FROM deployments WHERE name = ?", name)
        return DeploymentRecord.model_validate_json(rows[0][0]) if rows else None

    def deployments(self) -> list[DeploymentRecord]:
        rows = self._q("SELECT data FROM deployments ORDER BY name")
        return [DeploymentRecord.model_validate_json(r[0]) for r in rows]

    def forget_deployment(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM node_roles WHERE deployment = ?", (name,))
            self._db.execute("DELETE FROM deployments WHERE name = ?", (name,))

    # -- learned facts
    def learn(self, site: str, key: str, value: str, evidence: str) -> None:
        self._q(
            "INSERT INTO facts VALUES (?, ?, ?, ?, ?) ON CONFLICT(site, key) DO UPDATE SET "
            "value = excluded.value, evidence = excluded.evidence, learned = excluded.learned",
            site,
            key,
            value,
            evidence,
            time.time(),
        )

    def fact(self, site: str, key: str) -> Fact | None:
        rows = self._q(
            "SELECT site, key, value, evidence, learned FROM facts WHERE site = ? AND key = ?",
            site,
            key,
        )
        if not rows:
            return None
        r = rows[0]
        return Fact(site=r[0], key=r[1], value=r[2], evidence=r[3], learned=r[4])

    def facts(self, site: str | None = None) -> list[Fact]:
        rows = self._q("SELECT site, key, value, evidence, learned FROM facts ORDER BY site, key")
        return [
            Fact(site=r[0], key=r[1], value=r[2], evidence=r[3], learned=r[4])
            for r in rows
            if site is None or r[0] == site
        ]

    # -- metal claims: atomic, so two allocations never get one machine
    def claim(self, site: str, machines: list[str], node: str) -> str | None:
        with self._lock:
            for machine in machines:
                try:
                    self._db.execute("INSERT INTO claims VALUES (?, ?, ?)", (site, machine, node))
                    return machine
                except sqlite3.IntegrityError:
                    mine = self._db.execute(
                        "SELECT node FROM claims WHERE site = ? AND machine = ?", (site, machine)
                    ).fetchone()
                    if mine and mine[0] == node:
                        return machine  # already ours (a resumed step)
        return None

    def claimed_by(self, site: str, node: str) -> str | None:
        rows = self._q("SELECT machine FROM claims WHERE site = ? AND node = ?", site, node)
        return str(rows[0][0]) if rows else None

    def unclaim(self, site: str, machine: str) -> None:
        self._q("DELETE FROM claims WHERE site = ? AND machine = ?", site, machine)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True)
