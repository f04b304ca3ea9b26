"""A run's results as data (the JSON report, schema in docs/conformance.md), as a terminal
matrix, as JUnit XML for CI systems, and as a self-contained HTML report (an index page
with the matrix, a page per site)."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from interlock.conform.judge import site_passes
from interlock.conform.run import Run

SCHEMA = "interlock-conformance/1"


def as_dict(run: Run) -> dict[str, Any]:
    baseline = run.results.get(run.baseline or "")
    base = {r.capability.id: r.verdict for r in baseline} if baseline else {}
    sites: dict[str, Any] = {}
    for site, results in run.results.items():
        obs = run.observations[site]
        sites[site] = {
            "verdict": "pass" if site_passes(results) else "fail",
            "seconds": obs.seconds,
            "node": {
                "public_ip": obs.node.public_ip if obs.node else None,
                "login_user": obs.node.login_user if obs.node else None,
                "image": obs.node.image if obs.node else None,
                "image_name": obs.node.image_name if obs.node else None,
                "flavor": obs.node.flavor if obs.node else None,
                "flavor_name": obs.node.flavor_name if obs.node else None,
                "fixups": [str(f) for f in obs.node.fixups] if obs.node else [],
                "error": obs.error() or None,
            },
            "capabilities": {
                r.capability.id: {
                    "status": r.capability.status,
                    "verdict": r.verdict,
                    "fixups": r.fixups,
                    "baseline": base.get(r.capability.id),
                    "matches_baseline": (
                        None if not base else base.get(r.capability.id) == r.verdict
                    ),
                    "checks": [c.as_dict() for c in r.checks],
                }
                for r in results
            },
        }
    return {
        "schema": SCHEMA,
        "run": {
            "id": run.id,
            "started": run.started,
            "guideline": run.guideline.id,
            "request": run.guideline.request.model_dump(),
            "baseline": run.baseline,
        },
        "capabilities": {
            c.id: {"description": c.description, "status": c.status}
            for c in run.guideline.capabilities
            if c.status != "removed"
        },
        "sites": sites,
    }


def cell(cap: dict[str, Any]) -> str:
    """The matrix's words: [YES], [PARTIAL, floating IP allocated], [NO, …]."""
    v = cap["verdict"]
    text = f"[{v}, {'; '.join(cap['fixups'])}]" if v == "PARTIAL" and cap["fixups"] else f"[{v}]"
    if cap["matches_baseline"] is False:
        text += f" ≠ {cap['baseline']}"
    return text


STYLE = {"YES": "green", "PARTIAL": "yellow", "NO": "red", "NOT RUN": "dim", "ERROR": "magenta"}


def matrix(report: dict[str, Any]) -> Table:
    """Capabilities by sites, one word a cell (≠ marks a verdict unlike the baseline's);
    the fix-ups behind each PARTIAL are listed under the table (see `fixup_notes`). Names
    from the sites file and guideline are text, never read as markup."""
    sites = list(report["sites"])
    baseline = report["run"]["baseline"]
    table = Table(title=Text(f"{report['run']['guideline']} (baseline: {baseline or 'none'})"))
    table.add_column("capability", no_wrap=True)
    for s in sites:
        table.add_column(Text(s + (" (baseline)" if s == baseline else "")), no_wrap=True)
    for cid, meta in report["capabilities"].items():
        row = [Text(f"{cid}{' *' if meta['status'] == 'required' else ''}")]
        for s in sites:
            cap = report["sites"][s]["capabilities"][cid]
            mark = " ≠" if cap["matches_baseline"] is False else ""
            row.append(Text(f"{cap['verdict']}{mark}", style=STYLE[cap["verdict"]]))
        table.add_row(*row)
    table.add_row(
        "site verdict",
        *(Text(report["sites"][s]["verdict"].upper(), style="bold") for s in sites),
    )
    table.caption = (
        "* required: a site passes when every required capability is YES or PARTIAL;"
        " ≠ differs from the baseline"
    )
    return table


def fixup_notes(report: dict[str, Any]) -> list[str]:
    """'site, capability: [PARTIAL, fix-up; fix-up]' for every PARTIAL, and why for every NO."""
    notes = []
    for site, data in report["sites"].items():
        for cid, cap in data["capabilities"].items():
            if cap["verdict"] == "PARTIAL":
                notes.append(f"{site}, {cid}: {cell(cap)}")
            elif cap["verdict"] == "NO":
                why = next((c["observed"] for c in cap["checks"] if c["status"] == "fail"), "")
                notes.append(f"{site}, {cid}: [NO, {why}]")
    return notes


def junit(report: dict[str, Any]) -> str:
    suites = ET.Element("testsuites", name=report["run"]["guideline"])
    for site, data in report["sites"].items():
        cases = [(cid, c) for cid, cap in data["capabilities"].items() for c in cap["checks"]]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=site,
            tests=str(len(cases)),
            failures=str(sum(c["status"] == "fail" for _, c in cases)),
            errors=str(sum(c["status"] == "error" for _, c in cases)),
            skipped=str(sum(c["status"] in ("not-run", "waived") for _, c in cases)),
            time=str(data["seconds"]),
        )
        for cid, c in cases:
            case = ET.SubElement(
                suite, "testcase", classname=f"{site}.{cid}", name=c["name"],
                time=str(c["seconds"] or 0),
            )  # fmt: skip
            message = f"observed {c['observed']}; expected {c['expected']}"
            if c["status"] == "fail":
                ET.SubElement(case, "failure", message=message)
            elif c["status"] == "error":
                ET.SubElement(case, "error", message=message)
            elif c["status"] in ("not-run", "waived"):
                ET.SubElement(case, "skipped", message=c["waived"] or c["observed"])
            elif c["status"] == "fixup":
                ET.SubElement(case, "system-out").text = "fix-up: " + "; ".join(c["fixups"])
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}.v-YES{background:#dff5df}.v-PARTIAL{background:#fff4cc}
.v-NO{background:#fadcdc}.v-NOT-RUN,.v-ERROR{background:#eee}code{font-size:12px}"""


def css_class(verdict: str) -> str:
    return "v-" + verdict.replace(" ", "-")


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def write_html(report: dict[str, Any], out: Path) -> Path:
    """index.html (the matrix) and site-NAME.html per site, in `out`; returns the index."""
    out.mkdir(parents=True, exist_ok=True)
    e = html.escape
    sites = list(report["sites"])
    head = "".join(f"<th><a href='site-{e(s)}.html'>{e(s)}</a></th>" for s in sites)
    rows = []
    for cid, meta in report["capabilities"].items():
        cells = "".join(
            f"<td class='{css_class(c['verdict'])}'>{e(cell(c))}</td>"
            for c in (report["sites"][s]["capabilities"][cid] for s in sites)
        )
        rows.append(f"<tr><th title='{e(meta['description'])}'>{e(cid)} ({e(meta['status'])})"
                    f"</th>{cells}</tr>")  # fmt: skip
    verdicts = "".join(f"<td>{e(report['sites'][s]['verdict'].upper())}</td>" for s in sites)
    run = report["run"]
    index = (
        f"<h1>Conformance: {e(run['guideline'])}</h1><p>Run {e(run['id'])}, baseline "
        f"{e(run['baseline'] or 'none')}.</p><table><tr><th>capability</th>{head}</tr>"
        + "".join(rows)
        + f"<tr><th>site verdict</th>{verdicts}</tr></table>"
    )
    (out / "index.html").write_text(_page(f"Conformance {run['id']}", index))
    for s in sites:
        data = report["sites"][s]
        parts = [f"<h1>{e(s)}: {e(data['verdict'].upper())}</h1><p><a href='index.html'>"
                 f"all sites</a> · {data['seconds']} s</p><table><tr><th>capability</th>"
                 "<th>verdict</th><th>check</th><th>status</th><th>observed</th>"
                 "<th>expected</th></tr>"]  # fmt: skip
        for cid, cap in data["capabilities"].items():
            for c in cap["checks"]:
                verdict = f"<td class='{css_class(cap['verdict'])}'>{e(cell(cap))}</td>"
                parts.append(
                    f"<tr><td>{e(cid)}</td>{verdict}"
                    f"<td>{e(c['name'])}<br><code>{e(c['uuid'])}</code></td>"
                    f"<td>{e(c['status'])}</td><td>{e(c['observed'])}</td>"
                    f"<td>{e(c['expected'])}</td></tr>"
                )
        parts.append(
            "</table><h2>Node</h2><pre>" + e(json.dumps(data["node"], indent=2)) + "</pre>"
        )
        (out / f"site-{s}.html").write_text(_page(f"{s} conformance", "".join(parts)))
    return out / "index.html"
