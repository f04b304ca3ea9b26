"""interlock's state: typed records behind a store interface (SQLite by default)."""

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
)
from interlock.state.store import Store

__all__ = [
    "Attempt",
    "DeploymentRecord",
    "Fact",
    "NodeRecord",
    "NodeRoleRecord",
    "NodeStatus",
    "Progress",
    "RoleState",
    "Store",
    "open_store",
]


def open_store(path: Path) -> Store:
    """The store at `path` (SQLite; created on first use)."""
    from interlock.state.sqlite import SqliteStore

    return SqliteStore(path)
