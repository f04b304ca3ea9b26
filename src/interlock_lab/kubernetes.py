"""Kubernetes server binaries for lab nodes, built from Debian 12's `kubernetes` source
package with Debian's Go: nothing is pulled from upstream or a registry. Built once and
cached outside the repository (a build takes minutes); every later call finds the cache.

The source comes through apt with a private configuration (its own sources list and
lists directory), so the archive's signatures are checked and this machine's apt setup
is left as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from interlock.errors import ExitCode, InterlockError

VERSION = "1.20.2"  # Debian 12's kubernetes 1.20.5+really1.20.2
SOURCE = "kubernetes"
BINARIES = (
    "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
    "kubectl",
)  # fmt: skip
CACHE = Path(os.environ.get("INTERLOCK_KUBERNETES_CACHE", "/var/cache/interlock/kubernetes"))
SOURCES = """\
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
"""  # noqa: E501
# kubelet static like the rest: built with cgo it recompiles every package on its own
# (3.5 of a fresh build's 10.6 min here), and it needs nothing from libc.
BUILD_ENV = {"GOFLAGS": "-mod=vendor", "KUBE_GIT_VERSION": f"v{VERSION}",
             "KUBE_STATIC_OVERRIDES": "kubelet"}  # fmt: skip
# What a cache folder was built by: a changed recipe is built again.
RECIPE = f"{VERSION} " + " ".join(f"{k}={v}" for k, v in sorted(BUILD_ENV.items()))
NEEDED = ("go", "dpkg-source", "apt-get", "make", "rsync")


class BuildError(InterlockError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.ENVIRONMENT)


@dataclass(frozen=True)
class Binaries:
    folder: Path
    version: str
    built: bool  # False: found in the cache

    @property
    def files(self) -> list[Path]:
        return [self.folder / b for b in BINARIES]


def folder(cache: Path = CACHE) -> Path:
    return cache / VERSION / "bin"


def cached(cache: Path = CACHE) -> Binaries | None:
    where = folder(cache)
    complete = where / ".complete"
    if (
        complete.exists()
        and complete.read_text().strip() == RECIPE
        and all((where / b).is_file() for b in BINARIES)
    ):
        return Binaries(where, VERSION, built=False)
    return None


def ensure(cache: Path = CACHE, log: Path | None = None) -> Binaries:
    """The binaries, from the cache or built now (their build output goes to `log`)."""
    found = cached(cache)
    if found is not None:
        return found
    missing = [t for t in NEEDED if shutil.which(t) is None]
    if missing:
        raise BuildError(f"building Kubernetes needs {', '.join(missing)} (./install.sh)")
    work = Path(tempfile.mkdtemp(prefix="interlock-k8s-build-", dir="/var/tmp"))
    log = log or cache / VERSION / "build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w") as out:
            src = _source(work, out)
            targets = " ".join(f"cmd/{b}" for b in BINARIES)
            env = {**os.environ, **BUILD_ENV, "GOPATH": str(work / "gopath"),
                   "GOCACHE": str(work / "gocache")}  # fmt: skip
            _run(["make", f"WHAT={targets}"], out, cwd=src, env=env)
        built = next((p for p in (src / "_output").rglob("kubelet") if p.is_file()), None)
        if built is None:
            raise BuildError(f"the build made no kubelet (see {log})")
        dest = folder(cache)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for b in BINARIES:
            shutil.copy2(built.parent / b, dest / b)
        (dest / ".complete").write_text(RECIPE + "\n")
        return Binaries(dest, VERSION, built=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _source(work: Path, out: IO[str]) -> Path:
    """Debian's source package, unpacked with its patches, in `work`."""
    apt = work / "apt"
    for d in ("lists/partial", "cache/archives/partial"):
        (apt / d).mkdir(parents=True)
    (apt / "sources.list").write_text(SOURCES)
    opts = [
        "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/nonexistent",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip
    _run(["apt-get", *opts, "update"], out, cwd=work)
    _run(["apt-get", *opts, "source", SOURCE], out, cwd=work)
    found = [p for p in work.iterdir() if p.is_dir() and p.name.startswith(f"{SOURCE}-")]
    if not found:
        raise BuildError("apt-get source kubernetes unpacked nothing")
    return found[0]


def _run(cmd: list[str], out: IO[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:3])}… failed (exit {done.returncode})")
