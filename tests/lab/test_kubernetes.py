"""Kubernetes from the same roles: a control plane and two workers on the lab's aws site
(binaries built from Debian's source, images from files): every node Ready, a 3-replica
Deployment spread over the workers, pods reaching each other across nodes, a ClusterIP
and a NodePort Service answering, kubectl from the host with `interlock kubeconfig`,
exec and logs; a worker added by raising the count joins; down leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.conftest import Cli, Lab, outstanding, wait_for

NODE_PORT = 30080
WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: web, image: "interlock-lab/busybox:1", imagePullPolicy: Never,
         ports: [{containerPort: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-nodeport}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, nodePort: 30080}]
"""


def binaries() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "interlock", "lab", "kubernetes", "--json"],
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"no Kubernetes binaries: {done.stderr}")
    return dict(json.loads(done.stdout))


def deployment(tmp_path: Path, workers: int, found: dict[str, Any]) -> Path:
    image = tmp_path / "busybox.tar"
    if not image.exists():
        Cli.lab_image(image)
    doc = {
        "name": "kube",
        "groups": {
            "control": {"count": 1, "roles": ["kubernetes-control-plane"]},
            "worker": {"count": workers, "roles": ["kubernetes-worker", "pod-routes"]},
        },
        "attributes": {
            "docker": {"images": ["busybox.tar"]},
            "kubernetes-binaries": {"binaries": found["files"]},
            "kubernetes-worker": {"pause_image": "interlock-lab/pause:1"},
        },
        "ports": [6443, NODE_PORT],
    }
    path = tmp_path / "kube.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def answer(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())
    except OSError:
        return None


class Kubectl:
    def __init__(self, binary: Path, config: Path) -> None:
        self.base = [str(binary), "--kubeconfig", str(config)]

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([*self.base, *args], input=stdin, capture_output=True,
                              text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))


def test_a_cluster_from_the_roles_on_aws(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    found = binaries()
    before = outstanding(lab, "aws")
    done = cli.json("apply", str(deployment(tmp_path, 2, found)), "--site", "aws")
    assert done["converged"], [(r["id"] if "id" in r else r["node"], r["error"])
                               for r in done["node_roles"] if r["state"] != "active"]  # fmt: skip
    config = tmp_path / "kube.kubeconfig"
    cli("kubeconfig", "kube", "--out", str(config))
    assert config.stat().st_mode & 0o777 == 0o600
    kubectl = Kubectl(Path(found["folder"]) / "kubectl", config)
    nodes = kubectl.json("get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["kube-worker-1", "kube-worker-2"]
    kubectl("apply", "-f", "-", stdin=WEB)
    kubectl("rollout", "status", "deployment/web", "--timeout=120s")
    pods = kubectl.json("get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 3
    assert {p["spec"]["nodeName"] for p in pods} == {"kube-worker-1", "kube-worker-2"}
    one = next(p for p in pods if p["spec"]["nodeName"] == "kube-worker-1")
    other = next(p for p in pods if p["spec"]["nodeName"] == "kube-worker-2")
    fetch = ["exec", one["metadata"]["name"], "--", "/bin/busybox", "wget", "-q", "-O-"]
    assert "interlock-lab/busybox:1" in kubectl(*fetch, f"http://{other['status']['podIP']}/")
    cluster_ip = kubectl.json("get", "service", "web")["spec"]["clusterIP"]
    assert "interlock-lab/busybox:1" in kubectl(*fetch, f"http://{cluster_ip}/")
    workers = {n["name"]: n for n in done["nodes"] if n["group"] == "worker"}
    # kube-proxy programs the NodePort a moment after the rollout: until then, resets.
    for worker in workers.values():
        url = f"http://{worker['public_ip']}:{NODE_PORT}/"
        page = wait_for(f"NodePort on {worker['name']}", partial(answer, url))
        assert "interlock-lab/busybox:1" in page
    assert kubectl("logs", other["metadata"]["name"]) is not None
    # A third worker by raising the count: it joins, and every node routes to its pods.
    more = cli.json("apply", str(deployment(tmp_path, 3, found)), "--site", "aws")
    assert more["converged"] and more["added"] == ["kube-worker-3"]
    rerouted = {r["node"] for r in more["node_roles"] if r["role"] == "pod-routes"
                and r["runs"] == 2}  # fmt: skip
    assert rerouted == {"kube-worker-1", "kube-worker-2"}
    ready = [
        n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    ]  # fmt: skip
    assert sorted(ready) == ["kube-worker-1", "kube-worker-2", "kube-worker-3"]
    cli("down", "kube")
    assert outstanding(lab, "aws") == before
