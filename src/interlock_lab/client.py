"""Starting, asking and stopping the lab process (used by the CLI and the tests)."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from interlock.errors import ExitCode, InterlockError
from interlock_lab import labdir
from interlock_lab.sitefile import SiteFileError, SiteSpec, builtin_sites, load_site_file

NEEDED_TOOLS = ("setpriv", "unshare", "ip", "nft", "/usr/sbin/sshd", "openssl")


class LabError(InterlockError):
    pass


def resolve_sites(names: list[str], files: list[Path]) -> list[tuple[Path, SiteSpec]]:
    """Validate the requested sites before anything starts (all of them, or none)."""
    builtin = builtin_sites()
    chosen: list[Path] = []
    for name in names:
        if name not in builtin:
            raise LabError(
                f"unknown lab site {name!r}; built-in sites: {', '.join(builtin)} "
                "(or pass your own with --site-file)",
                ExitCode.BAD_INPUT,
            )
        chosen.append(builtin[name])
    chosen += [f.absolute() for f in files]
    if not chosen:
        chosen = list(builtin.values())
    specs: list[tuple[Path, SiteSpec]] = []
    for path in chosen:
        try:
            specs.append((path, load_site_file(path)))
        except SiteFileError as e:
            raise LabError(str(e), ExitCode.BAD_INPUT) from None
    seen: dict[str, Path] = {}
    for path, spec in specs:
        if spec.name in seen:
            raise LabError(
                f"{path}: field 'name': site {spec.name!r} is also defined by {seen[spec.name]}",
                ExitCode.BAD_INPUT,
            )
        seen[spec.name] = path
    metal = [p for p, s in specs if s.kind == "metal"]
    if len(metal) > 1:
        raise LabError(
            f"{metal[1]}: field 'kind': a lab serves one metal site at a time "
            f"(already: {metal[0]})",
            ExitCode.BAD_INPUT,
        )
    for i, (_, spec) in enumerate(specs):
        for other_path, other in specs[i + 1 :]:
            if spec.public.pool.overlaps(other.public.pool):
                raise LabError(
                    f"{other_path}: field 'public.pool': {other.public.pool} overlaps site "
                    f"{spec.name!r} ({spec.public.pool})",
                    ExitCode.BAD_INPUT,
                )
    return specs


def check_host() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts): run as root", ExitCode.ENVIRONMENT)
    missing = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"missing on this machine: {', '.join(missing)}; run the install script (./install.sh)",
            ExitCode.ENVIRONMENT,
        )


class LabClient:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or labdir.default_dir()

    def state(self) -> dict[str, Any] | None:
        """The running lab's state, or None if no lab runs from this directory."""
        if labdir.lab_pid(self.root) is None:
            return None
        return labdir.read_state(self.root)

    def _api(self) -> str:
        state = self.state()
        if state is None:
            raise LabError(f"the lab is not running (dir {self.root})", ExitCode.NOT_RUNNING)
        return str(state["api"])

    def get(self, path: str, **params: Any) -> Any:
        resp = httpx.get(self._api() + path, params=params, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = self.get("/v1/status")
        data["api"] = self._api()
        return data

    def nodes(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get("/v1/nodes")
        return data

    def ledger(self, site: str | None = None, outstanding: bool = False) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"outstanding": outstanding}
        if site is not None:
            params["site"] = site
        data: list[dict[str, Any]] = self.get("/v1/ledger", **params)
        return data

    # A guard against a daemon that hangs, not a pace: the daemon answers a failed start
    # itself. OpenStack's cold start takes about 2 minutes on 2 cores (LAB-NOTES), more
    # beside another lab; 120 s cut one short in CI (2026-12-01).
    def up(self, specs: list[tuple[Path, SiteSpec]], timeout: float = 600.0) -> dict[str, Any]:
        check_host()
        state = self.state()
        if state is not None:
            running = set(state["sites"])
            wanted = {s.name for _, s in specs}
            if wanted <= running:
                return self.status()
            raise LabError(
                f"the lab is already running with sites {', '.join(sorted(running))}; "
                "run `interlock lab down` first to change its sites",
                ExitCode.FAILURE,
            )
        labdir.clean_leftovers(self.root)  # what a crashed lab left, if anything
        self.root.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "interlock_lab.daemon", "--dir", str(self.root)]
        for path, _ in specs:
            args += ["--site-file", str(path)]
        ready_r, ready_w = os.pipe()
        args += ["--ready-fd", str(ready_w)]
        try:
            with open(self.root / labdir.LOG, "ab") as log:
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(ready_w,),
                    start_new_session=True,
                    env={**os.environ, labdir.MARK: str(self.root)},
                )
        finally:
            os.close(ready_w)
        try:
            answer = _read_answer(ready_r, timeout)
        finally:
            os.close(ready_r)
        if answer == "ok":
            return self.status()
        if answer is None:
            proc.kill()
            proc.wait()
            labdir.clean_leftovers(self.root)
            raise LabError(f"the lab did not answer within {timeout:.0f} s", ExitCode.FAILURE)
        proc.wait()
        raise LabError(f"the lab did not start:\n{self._log_tail()}", ExitCode.FAILURE)

    def down(self, timeout: float = 60.0) -> dict[str, Any]:
        """Stop the lab; returns what was still outstanding and what was cleaned."""
        pid = labdir.lab_pid(self.root)
        outstanding: list[dict[str, Any]] = []
        if pid is not None and labdir.read_state(self.root) is not None:
            outstanding = self.ledger(outstanding=True)
            httpx.post(self._api() + "/v1/down", timeout=10)
        elif pid is not None:
            os.kill(pid, 15)
        if pid is not None:
            labdir.wait_gone([pid], timeout)
        killed = labdir.clean_leftovers(self.root)
        labdir.remove_lab_files(self.root, keep_log=False)
        return {"was_running": pid is not None, "outstanding": outstanding, "killed": killed}

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.root / labdir.LOG).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])


def _read_answer(fd: int, timeout: float) -> str | None:
    """The lab's first line on its ready pipe: "ok", an error, "" if it died
    without a word, or None if it said nothing within `timeout`."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        if not poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace").strip()
