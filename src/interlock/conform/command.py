"""`interlock conform`: run the guideline against sites, report, keep, compare."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from interlock import config, render
from interlock.conform import guideline as guidelines
from interlock.conform import report, runner
from interlock.conform.results import Results, compare
from interlock.errors import ExitCode, InterlockError

out = render.console()
err = render.console(stderr=True)


def results_store() -> Results:
    return Results(config.home() / "conform" / "results.sqlite")


def conform(
    sites: Annotated[
        list[str] | None,
        typer.Argument(
            help="Sites to test (default: every configured site); or `compare A B`, `history`."
        ),
    ] = None,
    guideline: Annotated[
        Path | None, typer.Option("--guideline", help="Guideline file (default: built-in).")
    ] = None,
    baseline: Annotated[
        str, typer.Option("--baseline", help="The yardstick site ('' for none).")
    ] = "aws",
    as_json: Annotated[bool, typer.Option("--json", help="The JSON report on stdout.")] = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the HTML report into this directory.")
    ] = None,
) -> None:
    """Score sites on behavioural interoperability: the eight steps on real nodes, each
    capability YES / PARTIAL (with the fix-up named) / NO / NOT RUN, against a baseline.

    `interlock conform compare RUN_A RUN_B` compares two runs (ids from `history`, or
    `latest`); `interlock conform compare SITE_A SITE_B` compares two sites' latest
    results. Exit code 1 when a site fails a required capability.
    """
    args = list(sites or [])
    if args and args[0] == "history":
        _history(as_json)
        return
    if args and args[0] == "compare":
        _compare(args[1:], as_json)
        return
    g = guidelines.load(guideline)
    sites_file = config.load_sites(config.sites_path())
    names = args or list(sites_file.sites)
    yardstick = baseline or None
    if yardstick is not None and yardstick not in sites_file.sites:
        raise InterlockError(f"--baseline: unknown site {yardstick!r}", ExitCode.BAD_INPUT)
    if yardstick is not None and yardstick not in names:
        names = [yardstick, *names]
    if not as_json:
        render.lines(err, [f"conform: {', '.join(names)} against {g.id} …"])
    run = asyncio.run(runner.run(names, g, yardstick))
    data = report.as_dict(run)
    store = results_store()
    try:
        store.save(data)
    finally:
        store.close()
    if junit is not None:
        junit.write_text(report.junit(data))
    index = report.write_html(data, html or config.home() / "conform" / "html" / run.id)
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        render.table(out, report.matrix(data))
        render.lines(out, [f"  {note}" for note in report.fixup_notes(data)])
        render.lines(out, [f"run {run.id}; HTML report: {index}"])
    if any(s["verdict"] != "pass" for s in data["sites"].values()):
        raise typer.Exit(int(ExitCode.FAILURE))


def _history(as_json: bool) -> None:
    store = results_store()
    try:
        runs = store.history()
    finally:
        store.close()
    if as_json:
        print(json.dumps(runs, indent=2))
        return
    t = Table(title="conformance runs")
    for col in ("run", "guideline", "sites"):
        t.add_column(col)
    for r in runs:
        t.add_row(r["id"], r["guideline"], ", ".join(f"{s}: {v}" for s, v in r["verdicts"].items()))
    render.table(out, t)


def _compare(args: list[str], as_json: bool) -> None:
    if len(args) != 2:
        raise InterlockError("compare takes two runs or two sites", ExitCode.BAD_INPUT)
    store = results_store()
    try:
        runs = {r["id"] for r in store.history()}
        sides: list[tuple[str, dict[str, Any]]] = []
        if all(a in runs or a == "latest" for a in args):
            a, b = (store.get(x) for x in args)
            common = [s for s in a["sites"] if s in b["sites"]]
            rows = [
                {"site": s, **row}
                for s in common
                for row in compare((args[0], a["sites"][s]), (args[1], b["sites"][s]))
            ]
        else:
            for site in args:
                sides.append((site, store.latest_with(site)["sites"][site]))
            rows = compare(sides[0], sides[1])
    finally:
        store.close()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    t = Table(title=f"{args[0]} vs {args[1]}")
    for col in rows[0] if rows else []:
        t.add_column(col)
    for row in rows:
        t.add_row(*(str(v) for v in row.values()))
    render.table(out, t)


def register(app: typer.Typer) -> None:
    app.command("conform")(conform)
