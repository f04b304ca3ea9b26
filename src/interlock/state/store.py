"""The store's interface: what the engine, the steps and the services need of state.

One implementation (interlock.state.sql) serves SQLite, the embedded default, and
PostgreSQL; every operation is one transaction, so several processes may share a store.
"""

from __future__ import annotations

from typing import Any, Protocol

from interlock.state.records import (
    DeploymentRecord,
    Fact,
    NodeRecord,
    NodeRoleRecord,
    WorkerRecord,
)


class Store(Protocol):
    # -- nodes
    def put(self, node: NodeRecord) -> None: ...

    def get(self, name: str) -> NodeRecord | None: ...

    def update(self, name: str, **changes: Any) -> NodeRecord:
        """Change fields of a node; the result is validated (a wrong field or type raises)."""

    def nodes(self, deployment: str | None = None) -> list[NodeRecord]: ...

    def forget(self, name: str) -> None: ...

    # -- node-roles (a role bound to a node) and deployments (as last applied)
    def put_role(self, nr: NodeRoleRecord) -> None: ...

    def update_role(self, node: str, role: str, **changes: Any) -> NodeRoleRecord:
        """Change fields of a node-role; validated like `update`."""

    def roles(self, deployment: str) -> list[NodeRoleRecord]: ...

    def forget_role(self, node: str, role: str) -> None: ...

    def put_deployment(self, d: DeploymentRecord) -> None: ...

    def deployment(self, name: str) -> DeploymentRecord | None: ...

    def deployments(self) -> list[DeploymentRecord]: ...

    def forget_deployment(self, name: str) -> None:
        """The deployment's record and every node-role of it."""

    # -- learned facts
    def learn(self, site: str, key: str, value: str, evidence: str) -> None: ...

    def fact(self, site: str, key: str) -> Fact | None: ...

    def facts(self, site: str | None = None) -> list[Fact]: ...

    # -- metal claims: atomic, so two allocations never get one machine
    def claim(self, site: str, machines: list[str], node: str) -> str | None:
        """The first of `machines` nobody holds, now held by `node` (or already its)."""

    def claimed_by(self, site: str, node: str) -> str | None: ...

    def unclaim(self, site: str, machine: str) -> None: ...

    # -- workers (interlock.workers): heartbeats, and who takes over a dead one's work
    def heartbeat(self, worker: WorkerRecord) -> None: ...

    def workers(self) -> list[tuple[WorkerRecord, float]]: ...

    def take_over(self, executor: str, by: str, seen_before: float) -> bool: ...

    def retire(self, executor: str) -> None: ...

    def close(self) -> None: ...
