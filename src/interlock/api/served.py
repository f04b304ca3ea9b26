"""What the API and the web UI share: the sites file, the token, the jobs, an engine per
request, and the questions and long work both ask for (one implementation for both)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from interlock.api.jobs import Job, Jobs
from interlock.engine import Engine, open_engine
from interlock.errors import InterlockError
from interlock.state.records import NodeRecord, NodeRoleRecord
from interlock.views import (
    AppliedView,
    NodeView,
    SiteDetail,
    SiteSummary,
    node_line,
    role_line,
)


@dataclass
class Served:
    sites_file: Path | None
    token: str
    jobs: Jobs = field(default_factory=Jobs)

    @contextmanager
    def opened(self) -> Iterator[Engine]:
        e = open_engine(self.sites_file)
        try:
            yield e
        finally:
            e.store.close()

    def engine(self) -> Iterator[Engine]:
        """A request's engine (a FastAPI dependency), closed after it."""
        with self.opened() as e:
            yield e

    # -- questions ---------------------------------------------------------------------

    def site(self, e: Engine, name: str) -> SiteDetail:
        from interlock.services import conform

        cfg = e.sites.sites.get(name)
        if cfg is None:
            raise HTTPException(404, f"unknown site {name!r}")
        latest = next((r for r in conform.history() if name in r["verdicts"]), None)
        return SiteDetail(
            **dict(SiteSummary.of(name, cfg)),
            facts=e.store.facts(name),
            verdict=latest["verdicts"][name] if latest else None,
            run=latest["id"] if latest else None,
        )

    def node(self, e: Engine, name: str) -> NodeView:
        found = e.store.get(name)
        if found is None:
            raise HTTPException(404, f"no node {name!r}")
        return NodeView.of(found)

    # -- long work: checked now (bad input raises before any job), then a job ------------

    def apply(self, file: Path, sites: list[str], name: str | None) -> Job:
        from interlock.services import apply as service

        spec, chosen = service.check(file, sites or None, name)

        async def work(job: Job) -> dict[str, Any]:
            with self.opened() as e:
                done = await service.apply(e, file, chosen, nodes_said(job), roles_said(job), name)
            return AppliedView.of(done).model_dump(mode="json")

        return self.jobs.start("apply", spec.name, work)

    def down(self, e: Engine, name: str) -> Job:
        from interlock.services import deploy

        if not e.store.nodes(name) and e.store.deployment(name) is None:
            raise HTTPException(404, f"no deployment {name!r}")

        async def work(job: Job) -> dict[str, Any]:
            with self.opened() as e:
                done = await deploy.down(e, name)
            if done.kept:
                raise InterlockError(f"not released (down again): {', '.join(done.kept)}")
            return {"released": done.released}

        return self.jobs.start("down", name, work)

    def conform(self, sites: list[str], baseline: str | None) -> Job:
        from interlock.services import conform

        plan = conform.plan(sites, None, baseline, self.sites_file)

        async def work(job: Job) -> dict[str, Any]:
            outcome = await conform.run(plan, sites_file=self.sites_file)
            verdicts = {s: d["verdict"] for s, d in outcome.report["sites"].items()}
            return {"run": outcome.report["run"]["id"], "verdicts": verdicts}

        return self.jobs.start("conform", ",".join(plan.sites), work)


def nodes_said(job: Job) -> Callable[[list[NodeRecord]], None]:
    """A job's progress lines from node records, each change once (as the CLI prints)."""
    seen: dict[str, str] = {}

    def said(nodes: list[NodeRecord]) -> None:
        for n in nodes:
            line = node_line(n)
            if seen.get(n.name) != line:
                job.progress(line)
            seen[n.name] = line

    return said


def roles_said(job: Job) -> Callable[[list[NodeRoleRecord]], None]:
    seen: dict[str, str] = {}

    def said(records: list[NodeRoleRecord]) -> None:
        for r in records:
            if seen.get(r.id) != r.state:
                job.progress(role_line(r))
            seen[r.id] = r.state

    return said
