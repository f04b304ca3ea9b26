"""A private lab for a benchmark: built-in sites in a lab of their own.

Its public pools and services' addresses are the built-in ones, or moved by the lab
where another lab (a user's, a test suite's) holds them (interlock_lab.claims)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from interlock_lab import labdir
from interlock_lab.client import LabClient, resolve_sites
from interlock_lab.sitefile import builtin_of_kind, builtin_sites

OPENSTACK = builtin_of_kind("openstack")


def minimal_init_copy(site: str, work: Path) -> Path:
    """A copy of built-in `site` whose images all boot the lab's minimal init (not
    systemd): benchmarks of many nodes measure interlock and the lab, not systemd."""
    spec = yaml.safe_load(builtin_sites()[site].read_text())
    for image in spec["images"]:
        image["init"] = "minimal"
    path = work / f"{site}-minimal-init.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@contextmanager
def private_lab(sites: list[str], minimal_init: bool = False) -> Iterator[tuple[Path, LabClient]]:
    """Start the given built-in sites in a fresh work dir; yields (work, lab). With
    `minimal_init`, every image boots the lab's minimal init (see minimal_init_copy).

    Everything (lab, nodes, OpenStack, work dir) is gone when the block ends."""
    work = Path(tempfile.mkdtemp(prefix="interlock-bench-", dir="/var/tmp"))
    # SIGTERM ends the bench as Ctrl-C does, through the teardown below (by default it
    # would leave the lab's daemon and nodes running).
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        lab = LabClient(work / "lab")
        if minimal_init:
            lab.up(resolve_sites([], [minimal_init_copy(s, work) for s in sites]))
        else:
            lab.up(resolve_sites(sites, []))
        try:
            yield work, lab
        finally:
            lab.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def private_aws_lab() -> Iterator[tuple[Path, dict[str, Any]]]:
    """The aws site alone, its images on the minimal init (100 nodes stay fast);
    yields (work dir, the lab's sites file)."""
    with private_lab(["aws"], minimal_init=True) as (work, _):
        yield work, yaml.safe_load((work / "lab" / labdir.SITES).read_text())


def ec2_client(sites: dict[str, Any]) -> Any:
    """boto3 EC2 for the lab's aws site, configured as interlock configures it."""
    from interlock.config import AwsSite
    from interlock.providers.aws import AwsProvider

    return AwsProvider("aws", AwsSite.model_validate(sites["sites"]["aws"])).ec2


def interlock_env(work: Path) -> dict[str, str]:
    """The environment of `interlock` on a private lab's sites, with a home in `work`."""
    return {**os.environ, "INTERLOCK_HOME": str(work / "home"),
            "INTERLOCK_SITES": str(work / "lab" / labdir.SITES)}  # fmt: skip


def interlock(
    env: dict[str, str], *args: str, timeout: float = 3600
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """`interlock ARGS` with `env`: its wall-clock seconds and its result (exits if it fails)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "interlock", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"interlock {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return took, done


def print_figures(figures: dict[str, Any], as_json: bool) -> None:
    """A benchmark's figures: JSON, or one aligned line each."""
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    width = max(len(k) for k in figures) + 2
    for key, value in figures.items():
        print(f"{key.replace('_', ' '):{width}} {value}")
