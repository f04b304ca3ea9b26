"""A thousand lab nodes through the eight steps, three ways, side by side; then what ten
and a hundred thousand would need.

Usage (as root):
    python bench/scale.py [--nodes 1000] [--json] [--write-docs]

Starts a private lab (the built-in aws site, its images on the minimal init) and a real
PostgreSQL (Debian's package, its own data directory, a loopback port), then allocates
`--nodes` nodes with `interlock up` three times, releasing them in between:
- 1 `interlock worker` on PostgreSQL (`up` enqueues and follows);
- 2 `interlock worker`s on PostgreSQL;
- 1 process on SQLite (`up` runs its own work: the embedded default).
For each: nodes per second, EC2 API calls per node (all of them, down's apart, as
counted by the lab's EC2 as it answers them), peak memory (VmHWM) and CPU seconds of each
process that ran the work, and the state's size per node. From those per-node costs, a
projection for 10,000 and 100,000 nodes: workers, database size and API rate (printed;
`--write-docs` also writes them to docs/scale-figures.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from interlock_lab import labdir
from interlock_lab.client import LabClient
from interlock_lab.postgres import postgres_server
from lablib import print_figures, private_lab

HERE = Path(__file__).resolve().parent
TARGET_SECONDS = 600  # the projection: N nodes brought up within ten minutes


def interlock(*args: str, env: dict[str, str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "interlock", *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,
    )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_up(env: dict[str, str], name: str, n: int) -> tuple[float, list[dict[str, Any]]]:
    start = time.monotonic()
    up = interlock("up", name, "--count", str(n), "--site", "aws", "--json", env=env)
    out, err = up.communicate()
    wall = time.monotonic() - start
    if not out.strip():
        raise SystemExit(f"interlock up failed: {err.strip().splitlines()[-1:]}")
    return wall, json.loads(out)


def ec2_calls(lab: LabClient) -> int:
    """Every call the lab's EC2 answered so far, whoever made it."""
    return sum(lab.status()["sites"]["aws"]["api_calls"].values())


def with_workers(lab: LabClient, env: dict[str, str], workers: int, n: int) -> dict[str, Any]:
    procs = [interlock("worker", "--json", env=env) for _ in range(workers)]
    try:
        for p in procs:
            assert p.stdout is not None
            json.loads(p.stdout.readline())  # it is taking work
        before = ec2_calls(lab)
        wall, nodes = run_up(env, f"scale{workers}w", n)
        calls = ec2_calls(lab) - before
        peaks = [peak_mib(p.pid) for p in procs]
        cpu = [cpu_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=120)
    down(env, f"scale{workers}w")
    return figures(nodes, wall, calls, peaks, cpu)


def embedded(lab: LabClient, env: dict[str, str], n: int) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    calls = ec2_calls(lab)
    wall, nodes = run_up(env, "scale1p", n)
    calls = ec2_calls(lab) - calls
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    down(env, "scale1p")
    return figures(nodes, wall, calls, [after.ru_maxrss / 1024], [cpu])


def down(env: dict[str, str], name: str) -> None:
    subprocess.run([sys.executable, "-m", "interlock", "down", name], env=env, check=True,
                   capture_output=True, timeout=1800)  # fmt: skip


def figures(
    nodes: list[dict[str, Any]], wall: float, calls: int, peaks: list[float], cpu: list[float]
) -> dict[str, Any]:
    ready = sum(1 for x in nodes if x["status"] == "ready")
    return {
        "ready": ready,
        "wall_seconds": round(wall, 1),
        "nodes_per_second": round(ready / wall, 2),
        "api_calls_per_node": round(calls / max(ready, 1), 2),
        "peak_mib_per_process": [round(p) for p in peaks],
        "cpu_seconds_per_node": round(sum(cpu) / max(ready, 1), 3),
        "failures": sorted({x.get("error") or "" for x in nodes if x["status"] != "ready"}),
    }


def pg_bytes(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as c:
        row = c.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


def projection(per_node: dict[str, float], workers_measured: dict[str, Any]) -> dict[str, Any]:
    """What N nodes need, from the measured per-node costs, to be up in TARGET_SECONDS."""
    out = {}
    for n in (10_000, 100_000):
        cpu = n * per_node["cpu_seconds"]
        out[f"{n} nodes"] = {
            "workers (one core each)": math.ceil(cpu / TARGET_SECONDS),
            "database_mib": round(n * per_node["state_bytes"] / 2**20),
            "api_calls": round(n * per_node["api_calls"]),
            "api_calls_per_second": round(n * per_node["api_calls"] / TARGET_SECONDS, 1),
            "worker_memory_mib": workers_measured["peak_mib_per_process"][0],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    n = args.nodes
    with private_lab(["aws"], minimal_init=True) as (work, lab), postgres_server() as pg:
        sites = yaml.safe_load((work / "lab" / labdir.SITES).read_text())
        sites["sites"]["aws"]["limits"] = {"concurrency": n, "rate": 1000, "ssh_timeout": 900}
        (work / "sites.yaml").write_text(yaml.safe_dump(sites))
        base = {**os.environ, "INTERLOCK_SITES": str(work / "sites.yaml")}
        pg_env = {**base, "INTERLOCK_HOME": str(work / "home-pg"), "INTERLOCK_STATE_URL": pg.url}
        empty = pg_bytes(pg.url)
        one = with_workers(lab, pg_env, 1, n)
        grown = pg_bytes(pg.url) - empty  # DBOS's records stay (the nodes' are gone)
        two = with_workers(lab, pg_env, 2, n)
        sqlite_env = {**base, "INTERLOCK_HOME": str(work / "home-sqlite")}
        solo = embedded(lab, sqlite_env, n)
    per_node = {
        "api_calls": one["api_calls_per_node"],
        "cpu_seconds": one["cpu_seconds_per_node"],
        "state_bytes": grown / n,
    }
    result: dict[str, Any] = {
        "nodes": n,
        "1 worker, PostgreSQL": one,
        "2 workers, PostgreSQL": two,
        "1 process, SQLite": solo,
        "per_node": {**per_node, "state_bytes": round(per_node["state_bytes"])},
        "projection (up within 10 min)": projection(per_node, one),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            if isinstance(value, dict):
                print(f"\n{key}")
                print_figures(value, False)
            else:
                print(f"{key}: {value}")
    if args.write_docs:
        (HERE.parent / "docs" / "scale-figures.json").write_text(json.dumps(result, indent=2))
    return 0 if all(r["ready"] == n for r in (one, two, solo)) else 1


if __name__ == "__main__":
    sys.exit(main())
