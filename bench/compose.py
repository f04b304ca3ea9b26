"""A Docker Swarm from one deployment file on the lab's aws site: how long `interlock apply`
takes to converge it, how long a no-op re-apply takes, and how many SSH sessions a
node-role run opens.

Usage (as root):
    python bench/compose.py [--workers 2] [--json]

Starts a private lab (the built-in aws site; its Ubuntu 24.04 image boots systemd), writes
the lab's busybox image archive, applies a deployment of 1 manager and N workers (nodes
through the eight steps, then docker, swarm-manager, swarm-worker), applies it again
unchanged, and takes it down. Times are wall-clock seconds of the `interlock` command.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from lablib import interlock, interlock_env, print_figures, private_lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_lab(["aws"]) as (work, _lab):
        env = interlock_env(work)
        interlock(env, "lab", "image", "--out", str(work / "busybox.tar"))
        deploy = work / "swarm.yaml"
        deploy.write_text(yaml.safe_dump({
            "name": "bench", "sites": ["aws"],
            "groups": {
                "manager": {"count": 1, "roles": ["swarm-manager"]},
                "worker": {"count": args.workers, "roles": ["swarm-worker"]},
            },
            "attributes": {"docker": {"images": ["busybox.tar"]}},
        }))  # fmt: skip
        try:
            converge, done = interlock(env, "apply", str(deploy), "--json")
            result: dict[str, Any] = json.loads(done.stdout)
            assert result["converged"], result
            noop, again = interlock(env, "apply", str(deploy))
            assert "nothing to change" in again.stdout, again.stdout
            runs = result["node_roles"]
            figures = {
                "nodes": len(result["nodes"]),
                "node_roles": len(runs),
                "apply_to_converged_s": round(converge, 1),
                "noop_reapply_s": round(noop, 1),
                "ssh_sessions_per_node_role_run": round(
                    sum(r["sessions"] for r in runs) / len(runs), 2
                ),
                "node_role_run_mean_s": round(sum(r["seconds"] for r in runs) / len(runs), 2),
            }
        finally:
            interlock(env, "down", "--all")
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
