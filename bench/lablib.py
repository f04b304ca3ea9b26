"""A private lab for a benchmark: built-in sites moved to pools of their own."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from interlock_lab import labdir
from interlock_lab.client import LabClient, resolve_sites
from interlock_lab.sitefile import builtin_of_kind, builtin_sites

OPENSTACK = builtin_of_kind("openstack")


@contextmanager
def private_lab(
    texts: dict[str, str], openstack_address: str = "127.170.0.1"
) -> Iterator[tuple[Path, LabClient]]:
    """Start the given site files (name -> YAML) in a fresh work dir; yields (work, lab).

    Everything (lab, nodes, OpenStack, work dir) is gone when the block ends."""
    work = Path(tempfile.mkdtemp(prefix="interlock-bench-", dir="/var/tmp"))
    os.environ["INTERLOCK_LAB_OPENSTACK_ADDRESS"] = openstack_address
    try:
        files = []
        for name, text in texts.items():
            (work / f"{name}.yaml").write_text(text)
            files.append(work / f"{name}.yaml")
        lab = LabClient(work / "lab")
        lab.up(resolve_sites([], files))
        try:
            yield work, lab
        finally:
            lab.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def moved(name: str, old: str, new: str) -> str:
    """A built-in site file with its addresses moved (e.g. 127.6 -> 127.17)."""
    return builtin_sites()[name].read_text().replace(old, new)


@contextmanager
def private_aws_lab(pool: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The aws site alone on `pool`; yields (work dir, the lab's sites file)."""
    site = yaml.safe_load(builtin_sites()["aws"].read_text())
    site["public"]["pool"] = pool
    with private_lab({"aws": yaml.safe_dump(site)}) as (work, _):
        yield work, yaml.safe_load((work / "lab" / labdir.SITES).read_text())


def ec2_client(sites: dict[str, Any]) -> Any:
    """boto3 EC2 for the lab's aws site, configured as interlock configures it."""
    from interlock.config import AwsSite
    from interlock.providers.aws import AwsProvider

    return AwsProvider("aws", AwsSite.model_validate(sites["sites"]["aws"])).ec2


def print_figures(figures: dict[str, Any], as_json: bool) -> None:
    """A benchmark's figures: JSON, or one aligned line each."""
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    width = max(len(k) for k in figures) + 2
    for key, value in figures.items():
        print(f"{key.replace('_', ' '):{width}} {value}")
