"""A kubeconfig for a deployment's Kubernetes cluster, from what its control plane's
node-role provides (endpoint on the public address, CA, the administrator's token)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from interlock.engine import Engine
from interlock.errors import ExitCode, InterlockError

CONTROL_PLANE = "kubernetes-control-plane"  # the built-in role whose outputs say how


def write(e: Engine, deployment: str, path: Path) -> Path:
    found = [r for r in e.store.roles(deployment) if r.role == CONTROL_PLANE]
    if not found:
        raise InterlockError(
            f"deployment {deployment!r} has no {CONTROL_PLANE} node-role", ExitCode.NOT_RUNNING
        )
    r = found[0]
    if r.state != "active":
        raise InterlockError(
            f"{r.node}/{CONTROL_PLANE} is {r.state}: `interlock apply` first", ExitCode.NOT_RUNNING
        )
    out = r.outputs
    import base64

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": deployment, "cluster": {
            "server": str(out["public_endpoint"]),
            "certificate-authority-data": base64.b64encode(str(out["ca_cert"]).encode()).decode(),
        }}],
        "users": [{"name": f"{deployment}-admin", "user": {"token": str(out["admin_token"])}}],
        "contexts": [{"name": deployment,
                      "context": {"cluster": deployment, "user": f"{deployment}-admin"}}],
        "current-context": deployment,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)
    return path
