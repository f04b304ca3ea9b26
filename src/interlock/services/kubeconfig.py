"""A kubeconfig for a deployment's Kubernetes cluster, from what its control plane's
node-role provides (endpoint on the public address, CA, the administrator's token): the
node-role that provides those, whichever role it is (a user's own control plane too)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from interlock.engine import Engine
from interlock.errors import ExitCode, InterlockError

NEEDED = ("public_endpoint", "ca_cert", "admin_token")  # what a control plane provides


def write(e: Engine, deployment: str, path: Path) -> Path:
    found = [r for r in e.store.roles(deployment) if set(NEEDED) <= set(r.outputs)]
    if not found:
        busy = [r.id for r in e.store.roles(deployment) if r.state != "active"]
        why = f" yet ({', '.join(busy[:3])} not active: `interlock apply`)" if busy else ""
        raise InterlockError(
            f"no node-role of deployment {deployment!r} provides a Kubernetes API{why}",
            ExitCode.NOT_RUNNING,
        )
    r = found[0]
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
