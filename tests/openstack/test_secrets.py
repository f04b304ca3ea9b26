"""The lab's OpenStack secrets (admin, service, database, message bus and each cloud's
user password) stay in 0600 files: never in status output, the sites file, the state
file, the lab's log or any OpenStack service's log or command line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from interlock_lab import labdir
from tests.openstack.conftest import OsLab


def test_openstack_secrets_are_private_files_and_appear_nowhere_else(oslab: OsLab) -> None:
    root = Path(oslab.state["dir"])
    site = oslab.state["sites"]["os-tenant"]
    files = sorted((root / "openstack" / "secrets").iterdir())
    files.append(Path(site["clouds_file"]).parent / "api-password")
    assert len(files) == 5
    secrets = []
    for f in files:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
        secrets.append(f.read_text().strip())
    assert stat.S_IMODE(os.stat(site["clouds_file"]).st_mode) == 0o600
    places = {
        "status": json.dumps(oslab.client.status()),
        "sites.yaml": (root / labdir.SITES).read_text(),
        "state.json": (root / labdir.STATE).read_text(),
        "lab.log": (root / labdir.LOG).read_text(errors="replace"),
    }
    for log in (root / "openstack" / "logs").iterdir():
        places[log.name] = log.read_text(errors="replace")
    for pid in labdir.leftover_processes(root):
        places[f"cmdline of {pid}"] = Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    for where, text in places.items():
        for canary in secrets:
            assert canary not in text, f"a secret leaked into {where}"
