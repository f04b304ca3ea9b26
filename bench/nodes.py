"""Boot many sandbox nodes at once: seconds until all answer SSH, and memory per node.

Usage (as root):
    python bench/nodes.py [--nodes 100] [--dir DIR] [--json]

Every node boots concurrently on one lab network (10.99.0.0/16) and is published on
its own host loopback address (127.99.x.y:22). The clock starts just before the boots
and stops once every public address has sent an SSH banner. Memory is the PSS (and,
for reference, the RSS) of all processes of a node: unshare, the node's init and the
init's descendants (sshd, ...), read from /proc/PID/smaps_rollup.

All nodes are spawned on the event loop thread, as the lab's Runtime does: they carry
a parent-death signal tied to the thread that forked them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlock_lab.node.rootfs import FirstBoot
from interlock_lab.runtime import Node, Runtime
from interlock_lab.sitefile import Behaviour

NETWORK = ipaddress.IPv4Network("10.99.0.0/16")
PUBLIC = ipaddress.IPv4Network("127.99.0.0/16")
PUBLIC_OFFSET = 10  # first public address: 127.99.0.10
SSH_PORT = 22
READY_DEADLINE = 30.0
RETRY_DELAY = 0.01
BANNER = b"SSH-2.0"
MIB = 1024 * 1024


@dataclass
class Result:
    nodes: int
    ready: int = 0
    seconds_to_ready: float | None = None
    ready_times: list[float] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    pss_mib: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    procs_per_node: list[int] = field(default_factory=list)
    leftover: int = -1

    def summary(self) -> dict[str, Any]:
        secs = self.seconds_to_ready
        return {
            "nodes": self.nodes,
            "ready": self.ready,
            "seconds_to_all_ssh_ready": round(secs, 3) if secs is not None else None,
            "nodes_per_second": round(self.nodes / secs, 1) if secs else None,
            "median_node_ready_seconds": _round(_median(self.ready_times)),
            "mean_pss_mib_per_node": _round(_mean(self.pss_mib)),
            "mean_rss_mib_per_node": _round(_mean(self.rss_mib)),
            "mean_processes_per_node": _round(_mean([float(n) for n in self.procs_per_node])),
            "failures": self.failures,
            "leftover_processes": self.leftover,
        }


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def public_ip(i: int) -> ipaddress.IPv4Address:
    """The i-th public address: 127.99.0.10, 127.99.0.11, ... spread over 127.99.x.y."""
    n = PUBLIC_OFFSET + i
    if n >= PUBLIC.num_addresses - 1:
        raise ValueError(f"no public address left for node {i}")
    return PUBLIC[n]


# ---------------------------------------------------------------- SSH readiness


async def ssh_banner(ip: ipaddress.IPv4Address, deadline: float) -> None:
    """Return once `ip`:22 sends an SSH banner; retry refusals, resets and EOFs."""
    last = "no attempt"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no SSH banner from {ip} ({last})")
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(left):
                reader, writer = await asyncio.open_connection(str(ip), SSH_PORT)
                line = await reader.readline()
            if line.startswith(BANNER):
                return
            last = f"got {line[:40]!r}"
        except TimeoutError:
            raise TimeoutError(f"no SSH banner from {ip} ({last})") from None
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        await asyncio.sleep(RETRY_DELAY)


async def bring_up(
    rt: Runtime,
    i: int,
    net_key: str,
    behaviour: Behaviour,
    start: float,
    deadline: float,
) -> tuple[Node, float]:
    """Boot node `i`, publish it, and wait for its banner; seconds since `start`."""
    net = rt.networks[net_key]
    private = NETWORK.network_address + 10 + i  # Runtime.boot claims it in the pool
    node_id = f"bench-{i:04d}"
    boot = FirstBoot(
        hostname=f"ip-{str(private).replace('.', '-')}",
        behaviour=behaviour,
        private_ip=str(private),
        hide=(str(rt.run_dir),),
    )
    node = await rt.boot(node_id, "bench", net, private, boot)
    ip = public_ip(i)
    await rt.publish(ip, [SSH_PORT], node_id)
    await ssh_banner(ip, deadline)
    return node, time.monotonic() - start


# ---------------------------------------------------------------- memory


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def node_pids(node: Node) -> list[int]:
    """unshare, the node's init and all of the init's descendants."""
    pids = [node.box.pid]
    init = node.box.init_pid()
    if init is None:
        return pids
    todo = [init]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(_children(pid))
    return pids


def rollup(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of `pid` in bytes, from smaps_rollup; (0, 0) if it is gone."""
    pss = rss = 0
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1]) * 1024
        elif line.startswith("Rss:"):
            rss = int(line.split()[1]) * 1024
    return pss, rss


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time): tells a pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def measure(nodes: list[Node], result: Result) -> dict[int, str | None]:
    """Fill in memory figures; return every node pid with its start time."""
    seen: dict[int, str | None] = {}
    for node in nodes:
        pids = node_pids(node)
        pss = rss = 0
        for pid in pids:
            p, r = rollup(pid)
            pss += p
            rss += r
            seen[pid] = start_time(pid)
        result.pss_mib.append(pss / MIB)
        result.rss_mib.append(rss / MIB)
        result.procs_per_node.append(len(pids))
    return seen


# ---------------------------------------------------------------- leftovers


def leftovers(run_dir: Path, known: dict[int, str | None]) -> list[str]:
    """Processes still alive that name `run_dir`, or that were a node's."""
    mark = str(run_dir).encode()
    me = os.getpid()
    found: list[str] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if not cmdline:  # a zombie or kernel thread: status tells which
            continue
        mine = mark in cmdline
        if not mine and pid in known:
            started = start_time(pid)
            mine = started is not None and started == known[pid]
        if mine:
            args = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(f"{pid}: {args}")
    return found


# ---------------------------------------------------------------- main


async def run(count: int, run_dir: Path) -> Result:
    result = Result(nodes=count)
    loop = asyncio.get_running_loop()
    rt = Runtime(run_dir, loop)
    known: dict[int, str | None] = {}
    try:
        net_key = "bench"
        await rt.network(net_key, NETWORK)
        behaviour = Behaviour(login_user="ubuntu")
        start = time.monotonic()
        deadline = start + READY_DEADLINE
        outcomes = await asyncio.gather(
            *(bring_up(rt, i, net_key, behaviour, start, deadline) for i in range(count)),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - start
        ready: list[Node] = []
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException):
                result.failures[f"bench-{i:04d}"] = f"{type(outcome).__name__}: {outcome}"
            else:
                node, secs = outcome
                ready.append(node)
                result.ready_times.append(secs)
        result.ready = len(ready)
        if not result.failures:
            result.seconds_to_ready = elapsed
        known = measure(ready, result)
        for net in rt.networks.values():  # the namespace holder: `sleep infinity`
            known[net.holder.pid] = start_time(net.holder.pid)
    finally:
        await rt.close()
        left = leftovers(run_dir, known)
        result.leftover = len(left)
        for line in left:
            print(f"leftover: {line}", file=sys.stderr)
    return result


def print_summary(r: Result) -> None:
    s = r.summary()
    secs = s["seconds_to_all_ssh_ready"]
    print(f"nodes:                      {r.nodes} ({r.ready} SSH-ready)")
    if secs is not None:
        print(f"seconds to all SSH-ready:   {secs:.2f}")
        print(f"nodes/s:                    {s['nodes_per_second']:.1f}")
    else:
        print("seconds to all SSH-ready:   n/a (some nodes failed)")
    if s["median_node_ready_seconds"] is not None:
        print(f"median node ready (s):      {s['median_node_ready_seconds']:.2f}")
    if s["mean_pss_mib_per_node"] is not None:
        print(f"mean PSS MiB/node:          {s['mean_pss_mib_per_node']:.2f}")
        print(f"mean RSS MiB/node:          {s['mean_rss_mib_per_node']:.2f}")
        print(f"processes/node:             {s['mean_processes_per_node']:.1f}")
    for node_id, why in r.failures.items():
        print(f"FAILED {node_id}: {why}")
    print(f"leftover processes: {r.leftover}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=100, help="how many nodes (default 100)")
    parser.add_argument("--dir", type=Path, default=None, help="run dir (default: a fresh one)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (namespaces, overlay mounts)")
    made = args.dir is None or not args.dir.exists()  # never remove a dir we did not make
    if args.dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="interlock-bench-", dir="/var/tmp"))
    else:
        run_dir = args.dir.absolute()
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(run(args.nodes, run_dir))
    finally:
        if made:
            shutil.rmtree(run_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print_summary(result)
    return 0 if not result.failures and result.leftover == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
