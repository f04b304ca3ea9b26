"""A conformance run: every site observed at once, in a home of its own, then graded."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from interlock import config
from interlock.conform.guideline import Guideline
from interlock.conform.judge import CapabilityResult, grade
from interlock.conform.observe import Observation, observe
from interlock.engine import open_engine


@dataclass
class Run:
    id: str
    started: float
    guideline: Guideline
    baseline: str | None
    observations: dict[str, Observation]
    results: dict[str, list[CapabilityResult]]


async def run(
    sites: list[str], guideline: Guideline, baseline: str | None, sites_file: Path | None = None
) -> Run:
    """Every site in `sites` observed at once and graded against `guideline`, in a home of
    the run's own (removed afterwards), on the user's sites file."""
    from interlock.durable import running

    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    home = config.home() / "conform" / "runs" / run_id
    e = open_engine(sites_file, home)
    started = time.time()
    try:
        e.check_sites(sites)
        with running(e) as durable:
            found = await asyncio.gather(*(observe(durable.allocator, s, guideline) for s in sites))
    finally:
        e.store.close()
        shutil.rmtree(home, ignore_errors=True)
    observations = {o.site: o for o in found}
    results = {s: grade(guideline, o) for s, o in observations.items()}
    return Run(run_id, started, guideline, baseline, observations, results)
