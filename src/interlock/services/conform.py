"""Conformance as a service: run a guideline over sites and keep the report; the history of
runs; two runs or two sites compared."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock import config
from interlock.conform import guideline as guidelines
from interlock.conform.results import Results, compare
from interlock.errors import ExitCode, InterlockError
from interlock.state.url import StateUrl


@dataclass(frozen=True)
class Plan:
    """What a run will do: the guideline, the sites (the baseline first), the baseline."""

    guideline: guidelines.Guideline
    sites: list[str]
    baseline: str | None


@dataclass(frozen=True)
class Outcome:
    report: dict[str, Any]  # the JSON report (schema in docs/conformance.md)
    html: Path  # the HTML report's index page

    @property
    def passed(self) -> bool:
        return all(s["verdict"] == "pass" for s in self.report["sites"].values())


@contextmanager
def results() -> Iterator[Results]:
    store = Results(_state())
    try:
        yield store
    finally:
        store.close()


def _state() -> StateUrl:
    """The state URL as the sites file (if there is one) and the environment say."""
    try:
        sites = config.load_sites(config.sites_path())
    except InterlockError:
        sites = None
    return config.state_url(config.home(), sites)


def plan(
    sites: list[str], guideline: Path | None, baseline: str | None, sites_file: Path | None = None
) -> Plan:
    """The run asked for, checked before any node is made (bad input raises, exit 2)."""
    g = guidelines.load(guideline)
    configured = config.load_sites(config.sites_path(sites_file)).sites
    names = sites or list(configured)
    if baseline is not None and baseline not in configured:
        raise InterlockError(f"--baseline: unknown site {baseline!r}", ExitCode.BAD_INPUT)
    if baseline is not None and baseline not in names:
        names = [baseline, *names]
    return Plan(g, names, baseline)


async def run(
    p: Plan, junit: Path | None = None, html: Path | None = None, sites_file: Path | None = None
) -> Outcome:
    """Observe, judge, report: the report kept in the results store, JUnit and HTML written."""
    from interlock.conform import report
    from interlock.conform.run import run as run_guideline

    done = await run_guideline(p.sites, p.guideline, p.baseline, sites_file)
    data = report.as_dict(done)
    with results() as store:
        store.save(data)
    if junit is not None:
        junit.write_text(report.junit(data))
    index = report.write_html(data, html or config.home() / "conform" / "html" / done.id)
    return Outcome(data, index)


def history() -> list[dict[str, Any]]:
    with results() as store:
        return store.history()


def compared(a: str, b: str) -> list[dict[str, Any]]:
    """Capability by capability: two runs (ids, or `latest`), or two sites' latest results."""
    with results() as store:
        runs = {r["id"] for r in store.history()}
        if all(x in runs or x == "latest" for x in (a, b)):
            ra, rb = store.get(a), store.get(b)
            common = [s for s in ra["sites"] if s in rb["sites"]]
            return [
                {"site": s, **row}
                for s in common
                for row in compare((a, ra["sites"][s]), (b, rb["sites"][s]))
            ]
        sides = [(site, store.latest_with(site)["sites"][site]) for site in (a, b)]
        return compare(sides[0], sides[1])
