"""Kubernetes from interlock's roles on the lab's aws site: seconds from `interlock apply`
to every node Ready (1 control plane + 2 workers), the cluster's memory, and a no-op
re-apply.

Usage (as root):
    python bench/kubernetes.py [--json]

Starts a private lab (the built-in aws site; Ubuntu 24.04 boots systemd), takes the
Kubernetes binaries from `interlock lab kubernetes` (built once from Debian's source and
cached), applies the deployment, measures, and takes it down. Memory is the proportional
set size (PSS) of every process of the lab's nodes, counted from their cgroups.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from interlock_lab.node.cgroups import lab_cgroup
from lablib import interlock, interlock_env, print_figures, private_lab


def pss_mib(lab_dir: Path) -> float:
    """PSS of every process in the lab's node cgroups."""
    root = lab_cgroup(lab_dir)
    if root is None:
        return 0.0
    pids: set[int] = set()
    for procs in root.rglob("cgroup.procs"):
        pids |= {int(p) for p in procs.read_text().split()}
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_lab(["aws"]) as (work, _lab):
        env = interlock_env(work)
        _, found = interlock(env, "lab", "kubernetes", "--json")
        files = json.loads(found.stdout)["files"]
        interlock(env, "lab", "image", "--out", str(work / "busybox.tar"))
        deploy = work / "kube.yaml"
        deploy.write_text(yaml.safe_dump({
            "name": "bench", "sites": ["aws"],
            "groups": {
                "control": {"count": 1, "roles": ["kubernetes-control-plane"]},
                "worker": {"count": 2, "roles": ["kubernetes-worker", "pod-routes"]},
            },
            "attributes": {
                "docker": {"images": ["busybox.tar"]},
                "kubernetes-binaries": {"binaries": files},
                "kubernetes-worker": {"pause_image": "interlock-lab/pause:1"},
            },
        }))  # fmt: skip
        try:
            ready, done = interlock(env, "apply", str(deploy), "--json")
            result: dict[str, Any] = json.loads(done.stdout)
            assert result["converged"], result
            memory = pss_mib(work / "lab")
            noop, again = interlock(env, "apply", str(deploy))
            assert "nothing to change" in again.stdout, again.stdout
            figures = {
                "nodes": len(result["nodes"]),
                "apply_to_all_nodes_ready_s": round(ready, 1),
                "cluster_memory_pss_mib": round(memory),
                "noop_reapply_s": round(noop, 1),
            }
        finally:
            interlock(env, "down", "--all")
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
