"""The store on SQLAlchemy: one implementation for SQLite (the embedded default) and
PostgreSQL (several workers on several machines).

Every operation is one transaction, correct with several processes writing: a
read-modify-write (`update`, `update_role`) locks its row first (PostgreSQL: SELECT …
FOR UPDATE; SQLite: BEGIN IMMEDIATE takes the write lock up front), claims and facts are
single upserts.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from interlock.errors import ExitCode, InterlockError
from interlock.state.records import (
    DeploymentRecord,
    Fact,
    NodeRecord,
    NodeRoleRecord,
    WorkerRecord,
)
from interlock.state.url import StateUrl

meta = sa.MetaData()
# The columns an older interlock's state.db has, so its homes open unchanged.
nodes = sa.Table(
    "nodes",
    meta,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("deployment", sa.Text, nullable=False, index=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)
facts = sa.Table(
    "facts",
    meta,
    sa.Column("site", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("learned", sa.Float, nullable=False),
)
node_roles = sa.Table(
    "node_roles",
    meta,
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, primary_key=True),
    sa.Column("deployment", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
deployments = sa.Table(
    "deployments",
    meta,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)
claims = sa.Table(
    "claims",
    meta,
    sa.Column("site", sa.Text, primary_key=True),
    sa.Column("machine", sa.Text, primary_key=True),
    sa.Column("node", sa.Text, nullable=False),
)
workers = sa.Table(
    "workers",
    meta,
    sa.Column("executor", sa.Text, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("seen", sa.Float, nullable=False),
    sa.Column("taken_by", sa.Text, nullable=True),  # the worker that recovers its work
)
conform_runs = sa.Table(
    "conform_runs",
    meta,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("guideline", sa.Text, nullable=False),
    sa.Column("sites", sa.Text, nullable=False),
    sa.Column("report", sa.Text, nullable=False),
)
SCHEMA_LOCK = 0x1E7E_10C5  # PostgreSQL advisory lock: one process creates the tables


def connect(url: StateUrl) -> sa.Engine:
    """An engine on the state database, its tables made (once, whoever comes first)."""
    if url.is_sqlite:
        assert url.path is not None
        url.path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url.sqlalchemy, connect_args={"check_same_thread": False, "timeout": 30}
        )
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = sa.create_engine(url.sqlalchemy, pool_size=4, max_overflow=16, pool_pre_ping=True)
    try:
        with _first_opener(url), engine.begin() as c:
            if engine.dialect.name == "postgresql":
                c.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK)))
            else:
                c = c.execution_options(write=True)
            meta.create_all(c)
    except sa.exc.OperationalError as err:
        engine.dispose()
        why = str(err.orig or err).strip().splitlines()[0]
        raise InterlockError(f"state database {url}: {why}", ExitCode.NOT_RUNNING) from None
    return engine


@contextmanager
def _first_opener(url: StateUrl) -> Iterator[None]:
    """SQLite: processes opening one new file at once (turning on WAL, making the tables)
    take turns; SQLite's own busy handler does not cover those."""
    if url.path is None:
        yield
        return
    with open(url.path.with_name(url.path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sqlite_connect(dbapi: Any, _record: Any) -> None:
    # SQLAlchemy then begins transactions itself (see _sqlite_begin), not pysqlite.
    dbapi.isolation_level = None
    # Only the first opener sets WAL: done again while another process writes, it can
    # fail at once with "database is locked" (SQLite skips the busy handler for it), as
    # it does where several processes open a new file at once: they try again.
    for attempt in Retrying(
        retry=retry_if_exception_type(sqlite3.OperationalError),
        wait=wait_random_exponential(multiplier=0.02, max=1),
        stop=stop_after_delay(30),
        reraise=True,
    ):
        with attempt:
            if dbapi.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                dbapi.execute("PRAGMA journal_mode=WAL")


def _sqlite_begin(conn: sa.Connection) -> None:
    # A writing transaction takes the write lock before it reads: two processes doing a
    # read-modify-write of one row then run one after the other, never interleaved.
    write = conn.get_execution_options().get("write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class SqlStore:
    def __init__(self, url: StateUrl, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.engine = engine or connect(url)
        self._insert = (
            postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        )

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as c:
            c = c.execution_options(write=True)
            with c.begin():
                yield c

    def _read(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        with self.engine.connect() as c:
            return list(c.execute(query).all())

    def _upsert(self, table: sa.Table, keys: list[str], **values: Any) -> None:
        stmt = self._insert(table).values(**values)
        update = {k: v for k, v in values.items() if k not in keys}
        with self._write() as c:
            c.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update))

    # -- nodes
    def put(self, node: NodeRecord) -> None:
        self._upsert(
            nodes,
            ["name"],
            name=node.name,
            deployment=node.deployment,
            data=node.model_dump_json(),
            updated=time.time(),
        )

    def get(self, name: str) -> NodeRecord | None:
        rows = self._read(sa.select(nodes.c.data).where(nodes.c.name == name))
        return NodeRecord.model_validate_json(rows[0][0]) if rows else None

    def update(self, name: str, **changes: Any) -> NodeRecord:
        with self._write() as c:
            row = c.execute(
                sa.select(nodes.c.data).where(nodes.c.name == name).with_for_update()
            ).one()
            node = NodeRecord.model_validate_json(row[0])
            step = changes.get("step")
            if step and step not in node.timeline:
                changes["timeline"] = {**node.timeline, step: time.time()}
            # Validated as a whole: a wrong field or type fails here, not in a later reader.
            node = NodeRecord.model_validate({**node.model_dump(), **changes})
            c.execute(
                nodes.update()
                .where(nodes.c.name == name)
                .values(data=node.model_dump_json(), updated=time.time())
            )
        return node

    def nodes(self, deployment: str | None = None) -> list[NodeRecord]:
        query = sa.select(nodes.c.data).order_by(nodes.c.name)
        if deployment is not None:
            query = query.where(nodes.c.deployment == deployment)
        return [NodeRecord.model_validate_json(r[0]) for r in self._read(query)]

    def forget(self, name: str) -> None:
        with self._write() as c:
            c.execute(nodes.delete().where(nodes.c.name == name))

    # -- node-roles and deployments
    def put_role(self, nr: NodeRoleRecord) -> None:
        self._upsert(
            node_roles,
            ["node", "role"],
            node=nr.node,
            role=nr.role,
            deployment=nr.deployment,
            data=nr.model_dump_json(),
        )

    def update_role(self, node: str, role: str, **changes: Any) -> NodeRoleRecord:
        which = (node_roles.c.node == node) & (node_roles.c.role == role)
        with self._write() as c:
            row = c.execute(sa.select(node_roles.c.data).where(which).with_for_update()).one()
            nr = NodeRoleRecord.model_validate({**json.loads(row[0]), **changes})
            c.execute(node_roles.update().where(which).values(data=nr.model_dump_json()))
        return nr

    def roles(self, deployment: str) -> list[NodeRoleRecord]:
        query = (
            sa.select(node_roles.c.data)
            .where(node_roles.c.deployment == deployment)
            .order_by(node_roles.c.node, node_roles.c.role)
        )
        return [NodeRoleRecord.model_validate_json(r[0]) for r in self._read(query)]

    def forget_role(self, node: str, role: str) -> None:
        with self._write() as c:
            c.execute(
                node_roles.delete().where((node_roles.c.node == node) & (node_roles.c.role == role))
            )

    def put_deployment(self, d: DeploymentRecord) -> None:
        self._upsert(deployments, ["name"], name=d.name, data=d.model_dump_json())

    def deployment(self, name: str) -> DeploymentRecord | None:
        rows = self._read(sa.select(deployments.c.data).where(deployments.c.name == name))
        return DeploymentRecord.model_validate_json(rows[0][0]) if rows else None

    def deployments(self) -> list[DeploymentRecord]:
        rows = self._read(sa.select(deployments.c.data).order_by(deployments.c.name))
        return [DeploymentRecord.model_validate_json(r[0]) for r in rows]

    def forget_deployment(self, name: str) -> None:
        with self._write() as c:
            c.execute(node_roles.delete().where(node_roles.c.deployment == name))
            c.execute(deployments.delete().where(deployments.c.name == name))

    # -- learned facts
    def learn(self, site: str, key: str, value: str, evidence: str) -> None:
        self._upsert(
            facts,
            ["site", "key"],
            site=site,
            key=key,
            value=value,
            evidence=evidence,
            learned=time.time(),
        )

    def fact(self, site: str, key: str) -> Fact | None:
        found = self.facts(site, key)
        return found[0] if found else None

    def facts(self, site: str | None = None, key: str | None = None) -> list[Fact]:
        query = sa.select(facts).order_by(facts.c.site, facts.c.key)
        if site is not None:
            query = query.where(facts.c.site == site)
        if key is not None:
            query = query.where(facts.c.key == key)
        return [Fact.model_validate(r._asdict()) for r in self._read(query)]

    # -- metal claims: atomic, so two allocations never get one machine
    def claim(self, site: str, machines: list[str], node: str) -> str | None:
        for machine in machines:
            with self._write() as c:
                c.execute(
                    self._insert(claims)
                    .values(site=site, machine=machine, node=node)
                    .on_conflict_do_nothing()
                )
                holder = c.execute(
                    sa.select(claims.c.node).where(
                        (claims.c.site == site) & (claims.c.machine == machine)
                    )
                ).scalar_one()
            if holder == node:
                return machine  # newly ours, or already (a resumed step)
        return None

    def claimed_by(self, site: str, node: str) -> str | None:
        rows = self._read(
            sa.select(claims.c.machine).where((claims.c.site == site) & (claims.c.node == node))
        )
        return str(rows[0][0]) if rows else None

    def unclaim(self, site: str, machine: str) -> None:
        with self._write() as c:
            c.execute(
                claims.delete().where((claims.c.site == site) & (claims.c.machine == machine))
            )

    # -- workers: who runs durable work, and who takes over a dead one's
    def heartbeat(self, worker: WorkerRecord) -> None:
        self._upsert(
            workers,
            ["executor"],
            executor=worker.executor,
            data=worker.model_dump_json(),
            seen=time.time(),
        )

    def workers(self) -> list[tuple[WorkerRecord, float]]:
        """Each registered worker and when it last beat."""
        rows = self._read(sa.select(workers.c.data, workers.c.seen).order_by(workers.c.executor))
        return [(WorkerRecord.model_validate_json(r.data), float(r.seen)) for r in rows]

    def take_over(self, executor: str, by: str, seen_before: float) -> bool:
        """Atomically make `by` the one that recovers `executor`'s work, if it has not beaten
        since `seen_before` and nobody took it over yet."""
        with self._write() as c:
            taken = c.execute(
                workers.update()
                .where(
                    (workers.c.executor == executor)
                    & (workers.c.seen < seen_before)
                    & workers.c.taken_by.is_(None)
                )
                .values(taken_by=by)
            )
        return bool(taken.rowcount)

    def retire(self, executor: str) -> None:
        with self._write() as c:
            c.execute(workers.delete().where(workers.c.executor == executor))

    def close(self) -> None:
        self.engine.dispose()
