"""A sandbox node: Linux namespaces, an overlay root, a tiny init and a real sshd.

The process tree of a node is
    setpriv --pdeathsig KILL -- unshare --mount --uts --pid --net --fork --kill-child labinit
so that when the lab process dies, even by SIGKILL, the kernel ends the node:
unshare gets SIGKILL, its child (PID 1 of the node) gets SIGKILL, and with PID 1
go every process, mount and the network namespace. Nothing is left but files.
Spawn nodes from a long-lived thread: PR_SET_PDEATHSIG fires when the *thread*
that forked the child ends.

A node whose image boots systemd runs `labinit --systemd`, which joins the node's
own cgroup2 directory (made here, under the lab's, see cgroups.py), takes a cgroup
namespace and execs systemd as PID 1; the chain above is the same, so it dies with
the lab just as well. Stopping it also removes its cgroup directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from interlock_lab.fabric import netns
from interlock_lab.node import cgroups
from interlock_lab.node.rootfs import FirstBoot, prepare

READY_TIMEOUT = 60.0  # a loaded host (a thousand nodes, their SSH) boots slowly; a cloud waits too
SYSTEMD = Path("/lib/systemd/systemd")


class NodeStartError(RuntimeError):
    pass


@dataclass
class Sandbox:
    node_id: str
    dir: Path
    proc: subprocess.Popen[bytes]
    netns: int
    cgroup: Path | None = None  # systemd nodes: the node's own cgroup2 directory

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def init_pid(self) -> int | None:
        """Host pid of the node's PID 1 (unshare's only child)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return None
        return int(text[0]) if text else None

    def stop(self) -> None:
        """End every process of the node; returns once they are all gone."""
        if self.running:
            # SIGKILL to PID 1 ends the pid namespace; unshare then exits with it.
            target = self.init_pid() or self.pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            self.proc.wait()
        if self.cgroup is not None:
            cgroups.remove(self.cgroup)
        if self.netns >= 0:
            os.close(self.netns)
            self.netns = -1

    def wipe(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


async def start(
    init: Path, node_dir: Path, node_id: str, boot: FirstBoot, cgroup_parent: Path | None = None
) -> Sandbox:
    """Boot a node from `node_dir` (reusing its disk if it has one). A systemd node's
    cgroup directory is made in `cgroup_parent` (the lab's)."""
    # File work and key generation: in a worker thread, so other boots go on meanwhile.
    # The node itself is spawned below, from the loop's thread (see the module's doc).
    await asyncio.to_thread(_disk, node_dir, boot)
    delay_ms = int(boot.behaviour.boot_delay * 1000)
    cgroup: Path | None = None
    if boot.behaviour.init == "systemd":
        if cgroup_parent is None:
            raise NodeStartError(f"node {node_id}: a systemd node needs a cgroup2 hierarchy")
        if not SYSTEMD.exists():  # the init reports ready just before it execs systemd
            raise NodeStartError(f"node {node_id}: no {SYSTEMD}; run the install script")
        cgroup = cgroups.make(cgroup_parent / node_id)
        args = ["--systemd", str(node_dir), boot.hostname, str(cgroup)]
    else:
        args = [str(node_dir), boot.hostname, str(delay_ms)]
    r, w = os.pipe()
    try:
        with open(node_dir / "console.log", "ab") as console:
            proc = subprocess.Popen(
                [
                    "setpriv", "--pdeathsig", "KILL", "--",
                    "unshare", "--mount", "--uts", "--pid", "--net", "--fork",
                    "--kill-child=SIGKILL",
                    str(init), *args, str(w),
                ],
                pass_fds=(w,),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
            )  # fmt: skip
    finally:
        os.close(w)
    try:
        answer = await asyncio.wait_for(_read_line(r), READY_TIMEOUT)
    except TimeoutError:
        answer = "no answer from the node's init"
    finally:
        os.close(r)
    sandbox = Sandbox(node_id, node_dir, proc, -1, cgroup)
    if answer != "ok":
        sandbox.stop()
        raise NodeStartError(f"node {node_id} did not start: {answer or 'init exited'}")
    sandbox.netns = netns.open_netns(proc.pid)
    return sandbox


def _disk(node_dir: Path, boot: FirstBoot) -> None:
    """The node's disk: made on first boot, its overlay's work directory fresh on others."""
    upper = node_dir / "upper"
    if not upper.exists():
        for d in ("upper.new", "work", "merged"):
            (node_dir / d).mkdir(parents=True, exist_ok=True)
        prepare(node_dir / "upper.new", boot)
        (node_dir / "upper.new").rename(upper)
    else:
        shutil.rmtree(node_dir / "work", ignore_errors=True)
        (node_dir / "work").mkdir()


async def _read_line(fd: int) -> str:
    """Read one line from a pipe without blocking the event loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    buf = bytearray()

    def readable() -> None:
        chunk = os.read(fd, 512)
        buf.extend(chunk)
        if (not chunk or b"\n" in buf) and not done.done():
            done.set_result(buf.split(b"\n", 1)[0].decode(errors="replace").strip())

    loop.add_reader(fd, readable)
    try:
        return await done
    finally:
        loop.remove_reader(fd)
