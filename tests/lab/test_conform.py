"""`interlock conform` on the lab's aws and metal sites: every verdict matches the ground
truth in the site's file; the reports (JSON, JUnit XML, HTML) and the history hold it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from interlock_lab.sitefile import builtin_sites, load_site_file
from tests.lab.conftest import HERE, Cli, Lab, outstanding


def test_conform_matches_ground_truth_and_reports_it(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    junit, html = tmp_path / "junit.xml", tmp_path / "html"
    # A machine in use by somebody else (here: the user's own deployment, in another home
    # than conform's) is never claimed, and so never powered off, by the conformance run.
    (held,) = cli.json("up", "held", "--site", "metal", "--os", "ubuntu-24.04")
    assert held["status"] == "ready"
    machines = lab.state["sites"]["metal"]["machines"]
    held_machine = next(m["name"] for m in machines if m["public_ip"] == held["public_ip"])
    done = cli(
        "conform", "run", "aws", "metal", "--json", "--junit", str(junit), "--html", str(html)
    )
    report = json.loads(done.stdout)
    assert report["schema"] == "interlock-conformance/1" and report["run"]["baseline"] == "aws"
    for site in ("aws", "metal"):
        truth = load_site_file(builtin_sites()[site]).ground_truth.capabilities
        got = {c: v["verdict"] for c, v in report["sites"][site]["capabilities"].items()}
        assert got == truth, site
        assert report["sites"][site]["verdict"] == "pass"
        # Every conformance node was released; the held node is the only one left.
        servers = [e["rid"] for e in outstanding(lab, site) if e["kind"] == "server"]
        assert servers == ([] if site == "aws" else [held_machine])
    assert cli("ssh", "held-1", "--", "id -u").stdout.strip() == "0"
    metal = report["sites"]["metal"]["capabilities"]
    assert metal["node-key-removable"]["fixups"] == [
        "the site has no key API: removed from the node only"
    ]
    assert metal["node-key-removable"]["matches_baseline"] is False
    assert metal["metadata-listable"]["matches_baseline"] is True
    # JUnit: a suite per site, a case per check (here every one ran: none skipped).
    suites = {s.get("name"): s for s in ET.parse(junit).getroot()}
    assert set(suites) == {"aws", "metal"}
    checks = sum(len(c["checks"]) for c in report["sites"]["aws"]["capabilities"].values())
    assert len(list(suites["aws"])) == checks and suites["aws"].get("skipped") == "0"
    # aws has two Ubuntu versions: both were allocated, and both log in as ubuntu.
    consistent = report["sites"]["aws"]["capabilities"]["login-consistent"]["checks"][0]
    assert set(consistent["evidence"]["logins"].values()) == {"ubuntu"}
    assert len(consistent["evidence"]["logins"]) == 2
    # HTML: an index with the matrix and a page per site.
    assert {p.name for p in html.iterdir()} == {"index.html", "site-aws.html", "site-metal.html"}
    assert "PARTIAL" in (html / "site-metal.html").read_text()
    # History and comparison.
    history = cli.json("conform", "history")
    assert history[0]["id"] == report["run"]["id"]
    rows = cli.json("conform", "compare", "aws", "metal")
    differ = {r["capability"] for r in rows if not r["same"]}
    assert differ == {
        "node-key-registration", "root-access", "node-key-removable", "ssh-admitted-by-default"
    }  # fmt: skip


def test_a_bad_guideline_is_one_clear_error(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "g.yaml"
    bad.write_text("schema: 1\nid: g\nstatus: approved\ncapabilities: []\n")
    done = cli("conform", "run", "aws", "--guideline", str(bad), check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {bad} (line 4): field 'capabilities': "
        "List should have at least 1 item after validation, not 0"
    )


def test_a_users_own_site_file_gets_its_verdicts_without_code(lab: Lab, cli: Cli) -> None:
    done = cli("conform", "run", "userquirks", "--baseline", "", "--json")
    report = json.loads(done.stdout)
    truth = load_site_file(HERE / "userquirks.yaml").ground_truth.capabilities
    got = {c: v["verdict"] for c, v in report["sites"]["userquirks"]["capabilities"].items()}
    assert got == truth
    login = report["sites"]["userquirks"]["capabilities"]["login-discoverable"]["fixups"]
    assert any('root redirected to "vendor"' in f for f in login), login
    assert report["run"]["baseline"] is None
