"""What interlock shows of its state, as typed models: the CLI's `--json` and the HTTP API
return the same ones. Nothing secret is in any of them (a node-role's secret outputs are
masked; the request's traits stay in the store)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from interlock.compose.roles import Role
from interlock.config import SiteConfig
from interlock.state.records import (
    DeploymentRecord,
    Fact,
    NodeRecord,
    NodeRoleRecord,
    RoleState,
)

if TYPE_CHECKING:
    from interlock.services.apply import Applied

STATES: tuple[RoleState, ...] = ("active", "error", "blocked", "running", "pending")
MARK: dict[RoleState, str] = {"active": "✓", "error": "✗", "blocked": "⊘", "running": "…",
                              "pending": "·"}  # fmt: skip


def node_line(n: NodeRecord) -> str:
    """A node's progress as one line (the CLI's stderr, a job's events)."""
    return f"{n.name} [{n.site or '-'}] {n.status} {n.stage}".rstrip()


def role_line(r: NodeRoleRecord) -> str:
    why = f": {r.error or r.blocked_by}" if r.state in ("error", "blocked") else ""
    return f"{r.id} {r.state}{why}"


def by_node(records: list[NodeRoleRecord]) -> dict[str, list[NodeRoleRecord]]:
    """Each node's node-roles in the order they run (what each waits for first)."""
    found: dict[str, list[NodeRoleRecord]] = {}
    for r in sorted(records, key=lambda r: (r.rank, r.role)):
        found.setdefault(r.node, []).append(r)
    return found


class NodeView(NodeRecord):
    traits: dict[str, object] = Field(default={}, exclude=True)

    @classmethod
    def of(cls, n: NodeRecord) -> NodeView:
        return cls.model_validate(n.model_dump())


class NodeRoleView(NodeRoleRecord):
    @classmethod
    def of(cls, r: NodeRoleRecord) -> NodeRoleView:
        return cls.model_validate({**r.model_dump(), "outputs": r.shown_outputs()})


class DeploymentSummary(BaseModel):
    deployment: str
    sites: list[str]
    nodes: int
    ready: int
    node_roles: dict[str, int]  # by state, only states some node-role is in

    @classmethod
    def of(
        cls, d: DeploymentRecord, nodes: list[NodeRecord], records: list[NodeRoleRecord]
    ) -> DeploymentSummary:
        counts = {s: sum(r.state == s for r in records) for s in STATES}
        return cls(
            deployment=d.name,
            sites=d.sites,
            nodes=len(nodes),
            ready=sum(n.status == "ready" for n in nodes),
            node_roles={s: c for s, c in counts.items() if c},
        )


class DeploymentState(BaseModel):
    """Its nodes and node-roles, as they stand."""

    nodes: list[NodeView]
    node_roles: list[NodeRoleView]


def _state(nodes: list[NodeRecord], records: list[NodeRoleRecord]) -> DeploymentState:
    return DeploymentState(
        nodes=[NodeView.of(n) for n in nodes], node_roles=[NodeRoleView.of(r) for r in records]
    )


class DeploymentStatus(DeploymentState):
    deployment: str
    file: str
    sites: list[str]
    applying: str | None  # a detached apply's workflow id, while the workers run it
    error: str | None  # why the last detached apply stopped

    @classmethod
    def of(
        cls, d: DeploymentRecord, nodes: list[NodeRecord], records: list[NodeRoleRecord]
    ) -> DeploymentStatus:
        return cls(
            deployment=d.name, file=d.file, sites=d.sites, applying=d.applying, error=d.error,
            **dict(_state(nodes, records)),
        )  # fmt: skip


class AppliedView(DeploymentState):
    """What an apply did, and where the deployment stands after it."""

    deployment: str
    converged: bool
    changed: bool
    added: list[str]
    removed: list[str]
    ran: list[str]

    @classmethod
    def of(cls, done: Applied) -> AppliedView:
        return cls(
            deployment=done.deployment, converged=done.converged, changed=done.changed,
            added=done.added, removed=done.removed, ran=done.ran,
            **dict(_state(done.nodes, done.roles)),
        )  # fmt: skip


class SiteSummary(BaseModel):
    site: str
    provider: str
    region: str
    concurrency: int
    rate: float

    @classmethod
    def of(cls, name: str, cfg: SiteConfig) -> SiteSummary:
        return cls(
            site=name, provider=cfg.provider, region=cfg.region,
            concurrency=cfg.limits.concurrency, rate=cfg.limits.rate,
        )  # fmt: skip


class SiteDetail(SiteSummary):
    facts: list[Fact]  # what interlock learned of the site's behaviour
    verdict: str | None  # of the latest conformance run that covered it
    run: str | None


class RoleView(Role):
    folder: Path = Path(".")  # shown: where the role's files are
