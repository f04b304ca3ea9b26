"""The HTTP API (`interlock serve`), served by uvicorn on a loopback socket over a real
store: every route needs the bearer token, answers what the CLI's services answer, names
the field of a bad request (422), and never shows a secret (a canary planted in a site's
password file and in a node-role's secret output)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from interlock.api import token as tokens
from interlock.api.app import create
from interlock.engine import open_engine
from interlock.ssh import keys
from interlock.state.records import DeploymentRecord, NodeRecord, NodeRoleRecord
from tests.unit.planted import CANARY


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app under uvicorn on a listening loopback socket: requests wait in its backlog
    until the server accepts them, so nothing needs to wait for start-up."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with a sites file (aws and metal; the BMC password is the canary) and a
    deployment of two nodes whose worker node-role holds a secret output."""
    home = tmp_path / "home"
    monkeypatch.setenv("INTERLOCK_HOME", str(home))
    files = tmp_path / "files"
    files.mkdir()
    (files / "bmc-password").write_text(CANARY + "\n")
    (files / "aws-credentials").write_text(f"[p]\naws_secret_access_key = {CANARY}\n")
    keys.new_key(files / "pool-key", "pool")
    sites = tmp_path / "sites.yaml"
    sites.write_text(json.dumps({
        "sites": {
            "aws": {"provider": "aws", "region": "us-east-1", "endpoint": "http://127.0.0.1:9",
                    "aws_profile": "p", "aws_credentials_file": str(files / "aws-credentials")},
            "dc1": {"provider": "metal", "endpoint": "http://127.0.0.1:9/redfish/v1",
                    "username": "admin", "password_file": str(files / "bmc-password"),
                    "pool_key": str(files / "pool-key"),
                    "machines": [{"name": "r1", "uuid": "u1", "public_ip": "127.0.0.9",
                                  "vcpus": 2, "ram_mib": 4096, "distro": "ubuntu",
                                  "version": "24.04"}]},
        },
    }))  # fmt: skip
    monkeypatch.setenv("INTERLOCK_SITES", str(sites))
    e = open_engine()
    e.store.put_deployment(DeploymentRecord(name="web", file="/x/web.yaml", sites=["dc1"],
                                            spec={}))  # fmt: skip
    for name, group in (("web-manager-1", "manager"), ("web-worker-1", "worker")):
        e.store.put(NodeRecord(name=name, deployment="web", status="ready", site="dc1",
                               group=group, public_ip="127.0.0.9", traits={"cpus": 2}))  # fmt: skip
    e.store.put_role(NodeRoleRecord(
        deployment="web", node="web-manager-1", role="swarm-manager", group="manager",
        state="active", outputs={"join_token": CANARY, "manager_address": "10.0.0.1"},
        secret=["join_token"],
    ))  # fmt: skip
    e.store.put_role(NodeRoleRecord(deployment="web", node="web-worker-1", role="swarm-worker",
                                    group="worker", state="error", error="exit 1"))  # fmt: skip
    e.store.learn("dc1", "login_user", "root", "logged in as root")
    e.store.close()
    return home


@pytest.fixture
def api(home: Path) -> Iterator[tuple[httpx.Client, Any]]:
    app = create(None, tokens.ensure())
    with serving(app) as url:
        headers = {"Authorization": f"Bearer {tokens.ensure()}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            yield client, app


def routes(app: Any) -> list[tuple[str, str]]:
    """Every API route as (method, path) from its OpenAPI document, path parameters
    filled in."""
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "web", path))
        for path, ops in app.openapi()["paths"].items()
        for method in ops
    ]


def test_every_route_needs_the_token(api: tuple[httpx.Client, Any]) -> None:
    client, app = api
    every = routes(app)
    assert len(every) >= 11
    for method, path in every:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
            r = httpx.request(method, f"{client.base_url}{path}", headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "--show-token" in r.json()["detail"]


def test_the_token_is_made_once_mode_0600_and_shown_by_serve(home: Path) -> None:
    first = tokens.ensure()
    assert tokens.ensure() == first and len(first) >= 40
    assert tokens.path().stat().st_mode & 0o777 == 0o600
    shown = subprocess.run([sys.executable, "-m", "interlock", "serve", "--show-token"],
                           capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert shown.stdout.strip() == first


def test_deployments_nodes_and_sites_as_the_cli_shows_them(
    api: tuple[httpx.Client, Any],
) -> None:
    client, _ = api
    [summary] = client.get("/api/v1/deployments").json()
    assert summary == {"deployment": "web", "sites": ["dc1"], "nodes": 2, "ready": 2,
                       "node_roles": {"active": 1, "error": 1}}  # fmt: skip
    status = client.get("/api/v1/deployments/web").json()
    by_id = {f"{r['node']}/{r['role']}": r for r in status["node_roles"]}
    manager = by_id["web-manager-1/swarm-manager"]
    assert manager["outputs"] == {"join_token": "(secret)", "manager_address": "10.0.0.1"}
    assert by_id["web-worker-1/swarm-worker"]["error"] == "exit 1"
    cli = subprocess.run([sys.executable, "-m", "interlock", "status", "web", "--json"],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert json.loads(cli.stdout) == status
    nodes = client.get("/api/v1/nodes").json()
    assert [n["name"] for n in nodes] == ["web-manager-1", "web-worker-1"]
    assert all("traits" not in n for n in nodes)
    assert client.get("/api/v1/nodes/web-worker-1").json()["group"] == "worker"
    assert [s["site"] for s in client.get("/api/v1/sites").json()] == ["aws", "dc1"]
    dc1 = client.get("/api/v1/sites/dc1").json()
    assert dc1["provider"] == "metal" and dc1["verdict"] is None
    assert [(f["key"], f["value"]) for f in dc1["facts"]] == [("login_user", "root")]
    assert "docker" in {r["name"] for r in client.get("/api/v1/roles").json()}
    assert client.get("/api/v1/conform/runs").json() == []


def test_what_is_not_there_is_404_with_the_cli_s_message(api: tuple[httpx.Client, Any]) -> None:
    client, _ = api
    for path, said in (
        ("/api/v1/deployments/nope", "no deployment 'nope' applied"),
        ("/api/v1/nodes/nope", "no node 'nope'"),
        ("/api/v1/sites/nope", "unknown site 'nope'"),
        ("/api/v1/conform/runs/nope", "no conformance run 'nope'"),
    ):
        r = client.get(path)
        assert (r.status_code, r.json()["detail"]) == (404, said)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"traits": {"cpus": 0, "memory_gib": 1, "os": "ubuntu-24.04"}},
         ["body", "traits", "cpus"]),
        ({"traits": {"cpus": 1, "memory_gib": 1, "os": "Ubuntu 24"}}, ["body", "traits", "os"]),
        ({"sites": "aws", "traits": {"cpus": 1, "memory_gib": 1, "os": "ubuntu-24.04"}},
         ["body", "sites"]),
        ({"traits": {"cpus": 1, "memory_gib": 1, "os": "x"}, "colour": CANARY}, ["body", "colour"]),
    ],
)  # fmt: skip
def test_a_bad_plan_request_names_its_field(
    api: tuple[httpx.Client, Any], body: dict[str, Any], field: list[str]
) -> None:
    client, _ = api
    r = client.post("/api/v1/plan", json=body)
    assert r.status_code == 422
    assert field in [e["loc"] for e in r.json()["detail"]]
    assert CANARY not in r.text


def test_a_plan_on_an_unknown_site_is_422_with_the_cli_s_message(
    api: tuple[httpx.Client, Any],
) -> None:
    client, _ = api
    traits = {"cpus": 1, "memory_gib": 1, "os": "ubuntu-24.04"}
    r = client.post("/api/v1/plan", json={"sites": ["mars"], "traits": traits})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("unknown site 'mars'")


def test_a_site_that_does_not_answer_is_502_with_what_failed(
    api: tuple[httpx.Client, Any],
) -> None:
    client, _ = api
    traits = {"cpus": 1, "memory_gib": 1, "os": "ubuntu-24.04"}
    r = client.post("/api/v1/plan", json={"sites": ["aws"], "traits": traits})
    assert r.status_code == 502, r.text
    assert "aws" in r.json()["detail"] and CANARY not in r.text


def test_no_response_shows_a_secret(api: tuple[httpx.Client, Any]) -> None:
    client, app = api
    seen = [client.get("/openapi.json").text, client.get("/docs").text]
    for method, path in routes(app):
        if method == "GET":
            seen.append(client.get(path).text)
    seen.append(client.get("/api/v1/deployments/web").text)
    assert all(CANARY not in text for text in seen)
    assert all(tokens.ensure() not in text for text in seen)


def test_pages_need_signing_in_and_a_wrong_token_is_refused(
    api: tuple[httpx.Client, Any],
) -> None:
    client, _ = api
    browser = httpx.Client(base_url=client.base_url, timeout=30)
    for path in ("/", "/deployments/web", "/nodes/web-worker-1", "/sites/dc1", "/conform",
                 "/apply"):  # fmt: skip
        r = browser.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?after=")
    r = browser.post("/login", data={"token": "wrong", "after": "/nodes/web-worker-1"})
    assert r.status_code == 401 and "not this server" in r.text
    assert "interlock_token" not in browser.cookies
    r = browser.post("/login", data={"token": tokens.ensure(), "after": "//elsewhere.example"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    # Signed in: every page renders what the store holds, and no secret.
    pages = {
        "/": ["web", "dc1", "aws"],
        "/deployments/web": ["swarm-manager", "swarm-worker", "exit 1", 'data-state="error"'],
        "/nodes/web-worker-1": ["web-worker-1", "swarm-worker", "127.0.0.9"],
        "/sites/dc1": ["login_user", "logged in as root"],
        "/conform": ["No run yet"],
        "/apply": ["apply-form", "dc1"],
    }
    for path, shows in pages.items():
        r = browser.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        assert all(s in r.text for s in shows), path
        assert CANARY not in r.text and tokens.ensure() not in r.text
    assert browser.get("/deployments/nope").status_code == 404
    browser.post("/logout")
    assert browser.get("/").status_code == 303


def test_the_conformance_page_shows_the_matrix_and_each_site_s_history(
    api: tuple[httpx.Client, Any],
) -> None:
    from interlock.services import conform

    client, _ = api
    with conform.results() as store:
        for i, (verdict, seconds) in enumerate([("NO", 9.5), ("PARTIAL", 4.25), ("YES", 3.5)]):
            store.save({
                "run": {"id": f"run-{i}", "started": 1_790_000_000 + i * 3600, "guideline": "g",
                        "baseline": None},
                "capabilities": {"ssh-ready": {"description": "SSH soon", "status": "required"}},
                "sites": {"dc1": {"verdict": "pass" if verdict == "YES" else "fail",
                                  "capabilities": {"ssh-ready": {
                                      "status": "required", "verdict": verdict,
                                      "fixups": ["root login enabled"] if verdict == "PARTIAL"
                                      else [], "checks": [{"seconds": seconds}]}}}},
            })  # fmt: skip
    assert [r["id"] for r in client.get("/api/v1/conform/runs").json()] == [
        "run-2", "run-1", "run-0"]  # fmt: skip
    assert client.get("/api/v1/conform/runs/latest").json()["run"]["id"] == "run-2"
    compared = client.get("/api/v1/conform/compare", params={"a": "run-0", "b": "run-2"}).json()
    assert compared == [{"site": "dc1", "capability": "ssh-ready", "run-0": "NO", "run-2": "YES",
                         "same": False}]  # fmt: skip
    r = client.get("/api/v1/conform/compare", params={"a": "run-0"})
    assert r.status_code == 422 and ["query", "b"] in [e["loc"] for e in r.json()["detail"]]
    r = client.post("/api/v1/conform/runs", json={"sites": ["dc1"], "baseline": "mars"})
    assert (r.status_code, r.json()["detail"]) == (422, "--baseline: unknown site 'mars'")
    assert client.get("/api/v1/jobs").json() == []  # refused before any job
    browser = httpx.Client(base_url=client.base_url, timeout=30,
                           cookies={"interlock_token": tokens.ensure()})  # fmt: skip
    page = browser.get("/conform").text
    assert "Latest run run-2" in page and 'class="cell YES"' in page
    assert page.count("<svg") == 1 and "SSH-ready" in page
    site = browser.get("/sites/dc1").text
    assert "root login enabled" not in site  # the site page: counts, not fix-ups
    for row in ("9.5 s", "4.2 s", "3.5 s"):
        assert row in site
    chart = site.split("<svg", 1)[1]
    assert not re.search(r"<script[^>]*(src|href)=", chart)  # the chart fetches nothing
