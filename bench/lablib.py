"""A private lab for a benchmark: the built-in aws site on a pool of its own."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from interlock_lab import labdir
from interlock_lab.client import LabClient, resolve_sites
from interlock_lab.sitefile import builtin_sites


@contextmanager
def private_aws_lab(pool: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Start the aws site on `pool` in a fresh work dir; yields (work dir, lab sites file).

    Everything (lab, nodes, work dir) is gone when the block ends, however it ends.
    """
    work = Path(tempfile.mkdtemp(prefix="interlock-bench-", dir="/var/tmp"))
    try:
        site = yaml.safe_load(builtin_sites()["aws"].read_text())
        site["public"]["pool"] = pool
        (work / "aws.yaml").write_text(yaml.safe_dump(site))
        lab = LabClient(work / "lab")
        lab.up(resolve_sites([], [work / "aws.yaml"]))
        try:
            yield work, yaml.safe_load((work / "lab" / labdir.SITES).read_text())
        finally:
            lab.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ec2_client(sites: dict[str, Any]) -> Any:
    """boto3 EC2 for the lab's aws site, configured as interlock configures it."""
    from interlock.config import AwsSite
    from interlock.providers.aws import AwsProvider

    return AwsProvider("aws", AwsSite.model_validate(sites["sites"]["aws"])).ec2
