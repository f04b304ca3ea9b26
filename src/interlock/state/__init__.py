"""interlock's state: typed records behind a store interface (SQLite by default, or
PostgreSQL shared by several workers: see `state_url`)."""

from __future__ import annotations

from pathlib import Path

from interlock.state.records import (
    Attempt,
    DeploymentRecord,
    Fact,
    NodeRecord,
    NodeRoleRecord,
    NodeStatus,
    Progress,
    RoleState,
    WorkerRecord,
)
from interlock.state.store import Store
from interlock.state.url import StateUrl

__all__ = [
    "Attempt",
    "DeploymentRecord",
    "Fact",
    "NodeRecord",
    "NodeRoleRecord",
    "NodeStatus",
    "Progress",
    "RoleState",
    "StateUrl",
    "Store",
    "WorkerRecord",
    "open_store",
]


def open_store(where: StateUrl | Path) -> Store:
    """The store at a state URL, or in a SQLite file (its tables made on first use)."""
    from interlock.state.sql import SqlStore

    if isinstance(where, Path):
        where = StateUrl.parse(f"sqlite:///{where}", where.parent)
    return SqlStore(where)
