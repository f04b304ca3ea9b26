"""`interlock conform run | history | compare`: behavioural interoperability, scored."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from interlock.cli import render
from interlock.cli.options import JsonOpt, SitesOpt

T = TypeVar("T")
out = render.console()
err = render.console(stderr=True)
app = typer.Typer(
    help="Score sites on behavioural interoperability against a baseline site.",
    no_args_is_help=True,
)


@app.command()
def run(
    sites: Annotated[
        list[str] | None, typer.Argument(help="Sites to test (default: every configured site).")
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
    sites_file: SitesOpt = None,
) -> None:
    """The eight steps on a real node per site, each capability YES / PARTIAL (with the fix-up
    named) / NO / NOT RUN, against a baseline. Exit code 1 when a site fails a required
    capability."""
    from interlock.conform import report
    from interlock.errors import ExitCode
    from interlock.services import conform

    plan = conform.plan(list(sites or []), guideline, baseline or None, sites_file)
    if not as_json:
        render.lines(err, [f"conform: {', '.join(plan.sites)} against {plan.guideline.id} …"])
    outcome = _run(conform.run(plan, junit, html, sites_file))
    if as_json:
        print(json.dumps(outcome.report, indent=2))
    else:
        render.table(out, report.matrix(outcome.report))
        render.lines(out, [f"  {note}" for note in report.fixup_notes(outcome.report)])
        render.lines(out, [f"run {outcome.report['run']['id']}; HTML report: {outcome.html}"])
    if not outcome.passed:
        raise typer.Exit(int(ExitCode.FAILURE))


@app.command()
def history(as_json: JsonOpt = False) -> None:
    """Every conformance run kept, newest first, with each site's verdict."""
    from interlock.services import conform

    runs = conform.history()
    if as_json:
        print(json.dumps(runs, indent=2))
        return
    shown = [
        (r["id"], r["guideline"], ", ".join(f"{s}: {v}" for s, v in r["verdicts"].items()))
        for r in runs
    ]
    render.table(out, render.plain_table(("run", "guideline", "sites"), shown, "conformance runs"))


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="A run id (or `latest`), or a site.")],
    b: Annotated[str, typer.Argument(help="Another run id, or another site.")],
    as_json: JsonOpt = False,
) -> None:
    """Two runs capability by capability (ids from `history`, or `latest`), or two sites'
    latest results."""
    from interlock.services import conform

    rows = conform.compared(a, b)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    columns = list(rows[0]) if rows else []
    shown = [list(row.values()) for row in rows]
    render.table(out, render.plain_table(columns, shown, f"{a} vs {b}"))


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # here, not at the top: `interlock --help` never needs it

    return asyncio.run(coro)
