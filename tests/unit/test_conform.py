"""The guideline's schema, and how checks and capabilities are judged from observations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from interlock.conform import guideline as guidelines
from interlock.conform.judge import grade, site_passes
from interlock.conform.observe import Observation
from interlock.conform.report import as_dict, junit, write_html
from interlock.conform.run import Run
from interlock.errors import ExitCode, InterlockError
from interlock.state import NodeRecord, StateUrl

G = guidelines.load()


def node(**kw: object) -> NodeRecord:
    return NodeRecord(name="n-1", deployment="n", **kw)


def verdicts(obs: Observation) -> dict[str, str]:
    return {r.capability.id: r.verdict for r in grade(G, obs)}


def test_builtin_guideline_is_valid_and_covers_the_eight_steps() -> None:
    steps = {ch.params.get("step") for c in G.capabilities for ch in c.checks}
    assert steps >= {"node_key", "metadata", "selection", "request", "public_address", "login",
                     "root_access", "key_removal"}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("schema: 2\nid: g\nstatus: approved\ncapabilities: []\n", "schema"),
        ("schema: 1\nid: g\nstatus: maybe\ncapabilities: []\n", "status"),
        ("schema: 1\nid: g\nstatus: approved\ncapabilities:\n - {id: A, description: d,"
         " status: required, checks: [{uuid: 1, name: n, kind: step}]}\n", "capabilities[0].id"),
    ],
)  # fmt: skip
def test_bad_guidelines_name_the_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(text)
    with pytest.raises(InterlockError) as e:
        guidelines.load(path)
    assert re.match(rf"{path} \(line \d+\): field '{re.escape(field)}': ", str(e.value)), e.value
    assert e.value.code == ExitCode.BAD_INPUT


def test_a_clean_run_is_yes_and_fixups_make_partial_with_their_names() -> None:
    ok = node(status="ready", timeline={"request": 0.0, "login": 2.0},
              fixups=["public_address: floating IP allocated",
                      "root_access: password login turned off"])  # fmt: skip
    obs = Observation("s", node=ok, post={"boot_finished": True, "hostname": "h"},
                      released={"server": None, "site_key": False})  # fmt: skip
    got = {r.capability.id: r for r in grade(G, obs)}
    assert got["public-address"].verdict == "PARTIAL"
    assert got["public-address"].fixups == ["floating IP allocated"]
    assert got["password-login-off"].verdict == "PARTIAL"
    assert got["root-access"].verdict == "YES"  # the password fix-up is not root's
    assert got["node-request"].verdict == "YES" and got["time-to-ssh-ready"].verdict == "YES"
    assert got["login-consistent"].verdict == "NOT RUN"
    assert site_passes(list(got.values()))


def test_evidence_names_images_and_flavors_as_the_site_does_with_their_ids() -> None:
    uuid = "dc1623f2-0030-5d13-93e7-1a5dd2b7115c"
    ready = node(
        status="ready",
        login_user="cloud-user",
        image=uuid,
        image_name="ubuntu-24.04-server-cloudimg",
        flavor="42",
        flavor_name="b.medium",
    )
    other = "ubuntu-22.04-server-cloudimg (29033419-dbc0-57d7-b765-8a79ba9551e1)"
    obs = Observation("s", node=ready, logins={other: "dhc-user"})
    got = {r.capability.id: r for r in grade(G, obs)}
    (consistent,) = got["login-consistent"].checks
    assert consistent.observed == (
        f"ubuntu-24.04-server-cloudimg ({uuid}): cloud-user; {other}: dhc-user"
    )
    (selected,) = [c for c in got["selectable-by-traits"].checks if c.check.kind == "selected"]
    assert selected.observed == f"b.medium (42) / ubuntu-24.04-server-cloudimg ({uuid})"


def test_a_failed_step_is_no_and_what_follows_is_not_run_never_a_pass() -> None:
    attempt = {"site": "s", "result": "failed", "why": "public address: s: quota"}
    failed = node(status="failed", failed_step="public_address", attempts=[attempt])
    obs = Observation("s", node=failed, released={"server": None, "site_key": False})
    v = verdicts(obs)
    assert v["node-request"] == "YES" and v["public-address"] == "NO"
    assert {v[c] for c in ("login-discoverable", "root-access", "node-key-removable",
                            "post-provisioning-completes")} == {"NOT RUN"}  # fmt: skip
    assert not site_passes(grade(G, obs))
    # A request refused before anything was made: selection NO, metadata YES.
    refused = Observation("s", refused="s: no image of windows-11", refused_step="selection")
    v = verdicts(refused)
    assert (v["metadata-listable"], v["selectable-by-traits"], v["node-request"]) == (
        "YES", "NO", "NOT RUN")  # fmt: skip


def test_leftovers_after_release_fail_and_a_flag_waives() -> None:
    obs = Observation("s", node=node(status="ready"), released={"server": "i-1", "site_key": False})
    assert verdicts(obs)["released-on-delete"] == "NO"
    cap = next(c for c in G.capabilities if c.id == "released-on-delete")
    flagged = G.model_copy(update={"flagged": [guidelines.Flagged(
        uuid=cap.checks[0].uuid, reason="known bug", date="2026-11-01")]})  # fmt: skip
    (result,) = [r for r in grade(flagged, obs) if r.capability.id == "released-on-delete"]
    assert result.verdict == "YES" and result.checks[0].waived == "known bug (2026-11-01)"


def test_reports_carry_every_verdict(tmp_path: Path) -> None:
    fixed = node(status="ready", fixups=["public_address: floating IP allocated"])
    a = Observation("a", node=fixed, released={"server": None, "site_key": False})
    b = Observation("b", refused="b: AuthFailure", refused_step="metadata")
    run = Run("r1", 0.0, G, "a", {"a": a, "b": b}, {"a": grade(G, a), "b": grade(G, b)})
    data = json.loads(json.dumps(as_dict(run)))  # JSON all the way through
    assert data["sites"]["a"]["node"]["fixups"] == ["public_address: floating IP allocated"]
    assert data["sites"]["b"]["capabilities"]["metadata-listable"]["verdict"] == "NO"
    assert data["sites"]["b"]["capabilities"]["metadata-listable"]["matches_baseline"] is False
    xml = junit(data)
    assert xml.count("<testsuite ") == 2 and "<failure" in xml
    index = write_html(data, tmp_path)
    assert "site-b.html" in index.read_text() and (tmp_path / "site-b.html").exists()


def test_results_keep_history_and_compare_runs_and_sites(tmp_path: Path) -> None:
    from interlock.conform.results import Results, compare

    store = Results(StateUrl.default(tmp_path))
    ok = Observation("a", node=node(status="ready"), released={"server": None, "site_key": False})
    bad = Observation("a", refused="a: no image of x", refused_step="selection")
    for run_id, started, obs in (("r1", 1.0, ok), ("r2", 2.0, bad)):
        run = Run(run_id, started, G, None, {"a": obs}, {"a": grade(G, obs)})
        store.save(as_dict(run))
    assert [r["id"] for r in store.history()] == ["r2", "r1"]
    assert store.get("latest")["run"]["id"] == "r2"
    rows = compare(("r1", store.get("r1")["sites"]["a"]), ("r2", store.get("r2")["sites"]["a"]))
    changed = {r["capability"]: (r["r1"], r["r2"]) for r in rows if not r["same"]}
    assert changed["selectable-by-traits"] == ("YES", "NO")
    assert changed["node-request"] == ("YES", "NOT RUN")
    with pytest.raises(InterlockError) as e:
        store.get("r9")
    assert e.value.code == ExitCode.NOT_RUNNING
