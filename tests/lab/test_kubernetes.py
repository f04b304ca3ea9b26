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


def converges(cli: Cli, path: Path, site: str) -> dict[str, Any]:
    done: dict[str, Any] = cli.json("apply", str(path), "--site", site)
    assert done["converged"], [(r["node"], r["role"], r["error"])
                               for r in done["node_roles"] if r["state"] != "active"]  # fmt: skip
    return done


def ready_nodes(kubectl: Kubectl) -> list[str]:
    return sorted(
        n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    )  # fmt: skip


def cluster_serves(
    cli: Cli, done: dict[str, Any], found: dict[str, Any], tmp_path: Path
) -> Kubectl:
    """What a user checks of a new cluster, from the host: kubectl through `interlock
    kubeconfig`, every worker Ready, a 3-replica Deployment over both workers, pod to pod
    across nodes, the ClusterIP and the NodePort Services, exec and logs."""
    config = tmp_path / "kube.kubeconfig"
    cli("kubeconfig", "kube", "--out", str(config))
    assert config.stat().st_mode & 0o777 == 0o600
    kubectl = Kubectl(Path(found["folder"]) / "kubectl", config)
    assert ready_nodes(kubectl) == ["kube-worker-1", "kube-worker-2"]
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
    # kube-proxy programs the NodePort a moment after the rollout: until then, resets.
    for worker in (n for n in done["nodes"] if n["group"] == "worker"):
        url = f"http://{worker['public_ip']}:{NODE_PORT}/"
        page = wait_for(f"NodePort on {worker['name']}", partial(answer, url))
        assert "interlock-lab/busybox:1" in page
    # The pod served the requests above: httpd -v logs each one's status.
    assert "response:200" in kubectl("logs", other["metadata"]["name"])
    return kubectl


def test_a_cluster_from_the_roles_on_aws_grows_by_a_worker(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    found = binaries()
    before = outstanding(lab, "aws")
    done = converges(cli, deployment(tmp_path, 2, found), "aws")
    kubectl = cluster_serves(cli, done, found, tmp_path)
    # A third worker by raising the count: it joins, and every node routes to its pods.
    more = converges(cli, deployment(tmp_path, 3, found), "aws")
    assert more["added"] == ["kube-worker-3"]
    rerouted = {r["node"] for r in more["node_roles"] if r["role"] == "pod-routes"
                and r["runs"] == 2}  # fmt: skip
    assert rerouted == {"kube-worker-1", "kube-worker-2"}
    assert ready_nodes(kubectl) == ["kube-worker-1", "kube-worker-2", "kube-worker-3"]
    cli("down", "kube")
    assert outstanding(lab, "aws") == before


def test_the_same_file_makes_a_cluster_on_metal(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    found = binaries()
    before = outstanding(lab, "metal")
    done = converges(cli, deployment(tmp_path, 2, found), "metal")
    cluster_serves(cli, done, found, tmp_path)
    cli("down", "kube")
    assert outstanding(lab, "metal") == before


def test_a_pod_range_over_the_sites_network_is_refused_before_anything_is_made(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    before = outstanding(lab, "aws")
    path = deployment(tmp_path, 2, binaries())
    doc = yaml.safe_load(path.read_text())
    doc["attributes"]["kubernetes-control-plane"] = {"pod_cidr": "172.16.0.0/12"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = cli("apply", str(path), "--site", "aws", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert "attributes.kubernetes-control-plane.pod_cidr" in done.stderr
    assert "172.16.0.0/12 overlaps network" in done.stderr and "of site aws" in done.stderr
    assert cli.json("ls") == [] and outstanding(lab, "aws") == before
