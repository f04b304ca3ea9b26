"""Running one node-role: its role's script as root over one SSH connection, or its
playbook with ansible-runner from this host. The run gets exactly its inputs (a JSON
file, and each as an INTERLOCK_<NAME> environment variable) and returns what it
provides through a JSON file it writes (Digital Rebar's "wall"); a playbook returns it
with `set_stats`."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh

from interlock.compose.roles import Role
from interlock.model import Frozen
from interlock.ssh.remote import connect

BASE = "/var/lib/interlock"
TAIL_LINES = 30


class Target(Frozen):
    """Where a run goes: a ready node, as root with the platform key."""

    node: str
    address: str
    host_key: str  # as step 7 saw it: the connection is refused if it differs
    key_file: Path


class Outcome(Frozen):
    ok: bool
    outputs: dict[str, Any] = {}
    tail: str = ""
    error: str | None = None
    sessions: int = 0
    seconds: float = 0.0


async def run(role: Role, target: Target, inputs: dict[str, Any], secrets: list[str]) -> Outcome:
    started = time.monotonic()
    if role.script is not None:
        outcome = await _script(role, target, inputs)
    else:
        outcome = await asyncio.to_thread(_playbook, role, target, inputs)
    tail = _scrub(outcome.tail, [str(inputs[s]) for s in secrets if inputs.get(s)])
    tail = _scrub(tail, [str(v) for k, v in outcome.outputs.items() if role.provides.get(k) and
                         role.provides[k].secret and v])  # fmt: skip
    checked = _check(role, outcome) if outcome.ok else outcome
    return checked.model_copy(update={"tail": tail, "seconds": time.monotonic() - started})


def _check(role: Role, outcome: Outcome) -> Outcome:
    extra = sorted(set(outcome.outputs) - set(role.provides))
    missing = sorted(set(role.provides) - set(outcome.outputs))
    if extra:
        return outcome.model_copy(update={"ok": False, "error": f"wrote undeclared {extra[0]!r}"})
    if missing:
        why = f"did not write {missing[0]!r} (it provides it)"
        return outcome.model_copy(update={"ok": False, "error": why})
    return outcome


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if len(s) >= 4:
            text = text.replace(s, "…")
    return text


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])


def _env_value(v: Any) -> str:
    """Scalars as text (booleans: true/false); a list of scalars one per line; anything
    else as JSON (the inputs file has every value too)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str | int | float):
        return str(v)
    if isinstance(v, list) and all(isinstance(i, str | int | float) for i in v):
        return "\n".join(str(i) for i in v)
    return json.dumps(v)


def _env_name(name: str) -> str:
    return "INTERLOCK_" + name.upper()


async def _script(role: Role, target: Target, inputs: dict[str, Any]) -> Outcome:
    """One SSH connection: the role's folder and the files it is given copied over, its
    inputs written (0600), the script run, its outputs read back, inputs removed."""
    roles_dir, run_dir = f"{BASE}/roles/{role.name}", f"{BASE}/runs/{role.name}"
    known = asyncssh.import_known_hosts(f"{target.address} {target.host_key}\n")
    try:
        conn = await connect(target.address, "root", target.key_file, known_hosts=known)
        async with conn:
            await conn.run(
                f"rm -rf {roles_dir} && mkdir -p {roles_dir} {BASE}/files && "
                f"mkdir -m 700 -p {run_dir}",
                check=True,
            )
            async with conn.start_sftp_client() as sftp:
                await sftp.put(
                    [str(p) for p in role.folder.iterdir()], roles_dir, recurse=True,
                    preserve=True,
                )  # fmt: skip
                inputs = await _copy_files(sftp, role, inputs)
                async with sftp.open(f"{run_dir}/inputs.json", "w", asyncssh.SFTPAttrs(
                        permissions=0o600)) as f:  # fmt: skip
                    await f.write(json.dumps(inputs))
            env = {_env_name(k): _env_value(v) for k, v in inputs.items()}
            env |= {
                "INTERLOCK_INPUTS": f"{run_dir}/inputs.json",
                "INTERLOCK_OUTPUTS": f"{run_dir}/outputs.json",
                "INTERLOCK_ROLE_DIR": roles_dir,
            }
            assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            script = shlex.quote(f"{roles_dir}/{role.script}")
            done = await conn.run(
                f"cd {roles_dir} && rm -f {run_dir}/outputs.json && chmod +x {script} && "
                f"env {assigns} timeout {int(role.timeout)} {script} 2>&1",
                check=False,
            )
            tail = _tail(str(done.stdout or ""))
            read = await conn.run(
                f"cat {run_dir}/outputs.json 2>/dev/null; rm -f {run_dir}/inputs.json "
                f"{run_dir}/outputs.json",
                check=False,
            )
    except (OSError, asyncssh.Error) as e:
        return Outcome(ok=False, error=f"SSH to {target.node}: {e}", sessions=1)
    if done.exit_status != 0:
        code = done.exit_status if done.exit_status is not None else done.exit_signal
        why = "timed out" if done.exit_status == 124 else f"exited with {code}"
        return Outcome(ok=False, tail=tail, error=f"{role.script} {why}", sessions=1)
    text = str(read.stdout or "").strip()
    try:
        outputs = json.loads(text) if text else {}
    except ValueError:
        return Outcome(ok=False, tail=tail, error="outputs.json is not JSON", sessions=1)
    if not isinstance(outputs, dict):
        return Outcome(ok=False, tail=tail, error="outputs.json is not an object", sessions=1)
    return Outcome(ok=True, outputs=outputs, tail=tail, sessions=1)


async def _copy_files(sftp: Any, role: Role, inputs: dict[str, Any]) -> dict[str, Any]:
    """Host files a `files` attribute names, copied once each (by content) to the node;
    the run gets their paths there."""
    out = dict(inputs)
    for name, declared in role.attributes.items():
        if declared.type != "files" or name not in inputs:
            continue
        placed = []
        for local in inputs[name]:
            digest = await asyncio.to_thread(_sha256, Path(local))
            remote = f"{BASE}/files/{digest[:16]}-{Path(local).name}"
            if not await sftp.exists(remote):
                await sftp.put(local, remote + ".part")
                await sftp.rename(remote + ".part", remote)
            placed.append(remote)
        out[name] = placed
    return out


def _sha256(path: Path) -> str:
    info = path.stat()  # a file given to many nodes is hashed once while it is unchanged
    return _digest(str(path), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _playbook(role: Role, target: Target, inputs: dict[str, Any]) -> Outcome:
    """ansible-runner, from a private 0700 folder removed afterwards (it holds the
    inputs); the host key is pinned as for scripts."""
    import ansible_runner

    work = Path(tempfile.mkdtemp(prefix="interlock-run-"))
    try:
        known = work / "known_hosts"
        known.write_text(f"{target.address} {target.host_key}\n")
        common = f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"
        inventory = {"all": {"hosts": {target.node: {
            "ansible_host": target.address, "ansible_user": "root",
            "ansible_ssh_private_key_file": str(target.key_file),
            "ansible_ssh_common_args": common,
        }}}}  # fmt: skip
        bin_dir = str(Path(sys.executable).parent)
        env = {
            "ANSIBLE_HOME": str(work / "ansible"),
            "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        result = ansible_runner.run(
            private_data_dir=str(work),
            project_dir=str(role.folder),
            playbook=str(role.playbook),
            inventory=inventory,
            extravars=inputs,
            envvars=env,
            quiet=True,
            timeout=int(role.timeout),
        )
        stdout = result.stdout.read() if result.stdout else ""
        outputs: dict[str, Any] = {}
        for event in result.events:
            if event.get("event") == "playbook_on_stats":
                outputs = dict(event.get("event_data", {}).get("artifact_data") or {})
        sessions = 1  # ssh's ControlMaster (Ansible's default): one connection per host
        if result.rc != 0:
            why = f"{role.playbook} failed ({result.status}, exit {result.rc})"
            return Outcome(ok=False, tail=_tail(stdout), error=why, sessions=sessions)
        return Outcome(ok=True, outputs=outputs, tail=_tail(stdout), sessions=sessions)
    finally:
        shutil.rmtree(work, ignore_errors=True)
