"""`interlock serve` on the lab, driven as a script would: a deployment applied through the
API and followed on its event stream until done, its state as the CLI shows it, a bad file
refused with nothing made, the deployment released through the API; the ledger clean and
neither the token nor a site's secret in anything the server printed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.lab.conftest import Cli, Lab, Server, outstanding


def events(server: Server, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's event stream, read to its end."""
    seen: list[dict[str, Any]] = []
    with server.client() as c, c.stream("GET", f"/api/v1/jobs/{job['id']}/events",
                                         timeout=httpx.Timeout(60, read=900)) as r:  # fmt: skip
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
    return seen


def motd_file(tmp_path: Path, name: str, **groups: Any) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "groups": {"web": {"count": 1, "traits": {"os": "ubuntu-24.04"}, "roles": ["motd"],
                           **groups}},
        "attributes": {"motd": {"banner": "served"}},
    }))  # fmt: skip
    return path


def test_a_deployment_applied_followed_and_released_through_the_api(
    lab: Lab, cli: Cli, server: Server, tmp_path: Path
) -> None:
    before = outstanding(lab, "aws")
    with server.client() as c:
        traits = {"cpus": 1, "memory_gib": 1, "os": "ubuntu-24.04"}
        plan = c.post("/api/v1/plan", json={"sites": ["aws"], "traits": traits}).json()
        assert plan == cli.json("plan", "--site", "aws", "--cpus", "1", "--memory", "1")
        r = c.post("/api/v1/deployments", json={"file": str(motd_file(tmp_path, "hello")),
                                                 "sites": ["aws"]})  # fmt: skip
        assert r.status_code == 202, r.text
        job = r.json()
        assert r.headers["location"] == f"/api/v1/jobs/{job['id']}"
        seen = events(server, job)
        assert [e["seq"] for e in seen] == list(range(len(seen)))
        assert seen[-1]["kind"] == "done", seen[-1]
        assert "hello-web-1/motd active" in [e["text"] for e in seen]
        assert seen[-1]["result"]["converged"]
        assert c.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "done"
        status = c.get("/api/v1/deployments/hello").json()
        assert status == cli.json("status", "hello")
        assert [r["state"] for r in status["node_roles"]] == ["active"]
        # A second follower, from the middle: the rest of the events, the same ones.
        later = c.get(f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "1"})
        rest = [json.loads(x[6:]) for x in later.text.splitlines() if x.startswith("data: ")]
        assert rest == seen[2:]

        r = c.delete("/api/v1/deployments/hello")
        assert r.status_code == 202
        assert events(server, r.json())[-1]["kind"] == "done"
        assert c.get("/api/v1/deployments").json() == []
    assert outstanding(lab, "aws") == before
    printed = (tmp_path / "serve.log").read_text()
    assert server.token not in printed
    assert lab.state["sites"]["aws"]["aws_secret_access_key"] not in printed


def test_conformance_run_through_the_api(lab: Lab, server: Server) -> None:
    before = outstanding(lab, "aws")
    with server.client() as c:
        r = c.post("/api/v1/conform/runs", json={"sites": ["aws"], "baseline": None})
        assert r.status_code == 202
        done = events(server, r.json())[-1]
        assert done["kind"] == "done" and done["result"]["verdicts"] == {"aws": "pass"}
        report = c.get(f"/api/v1/conform/runs/{done['result']['run']}").json()
        assert report["sites"]["aws"]["capabilities"]["public-address"]["verdict"] == "YES"
        assert [r["id"] for r in c.get("/api/v1/conform/runs").json()] == [done["result"]["run"]]
    assert outstanding(lab, "aws") == before


def test_a_bad_file_is_422_naming_it_and_nothing_is_made(
    lab: Lab, cli: Cli, server: Server, tmp_path: Path
) -> None:
    before = outstanding(lab, "aws")
    bad = motd_file(tmp_path, "bad", count="three")
    with server.client() as c:
        r = c.post("/api/v1/deployments", json={"file": str(bad), "sites": ["aws"]})
        assert r.status_code == 422
        said = r.json()["detail"]
        assert str(bad) in said and "groups.web.count" in said
        r = c.post("/api/v1/deployments", json={"file": str(tmp_path / "none.yaml")})
        assert r.status_code == 422 and "none.yaml" in r.json()["detail"]
        assert c.get("/api/v1/jobs").json() == []
    assert cli.json("ls") == [] and outstanding(lab, "aws") == before
    assert os.path.exists(bad)
