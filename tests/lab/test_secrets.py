"""Secrets of the lab (login and BMC passwords, the pool's private key) stay in their
0600 files: never in status output, the ledger, the state file or the lab's log."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from interlock_lab import labdir
from tests.lab.conftest import Lab
from tests.lab.test_images import IMAGES


def test_secrets_are_private_files_and_appear_nowhere_else(lab: Lab) -> None:
    sites = lab.state["sites"]
    ec2 = lab.ec2("quirks")
    # An image with password logins makes the site create its login password.
    inst = ec2.run_instances(ImageId=IMAGES["centos"], MinCount=1, MaxCount=1)["Instances"][0]
    try:
        files = [
            Path(sites["quirks"]["password_file"]),
            Path(sites["metal"]["password_file"]),
            Path(sites["metal"]["pool_key"]),
        ]
        secrets = []
        for f in files:
            assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
            secrets.append(f.read_text().strip())
        key_body = secrets[2].splitlines()[1]  # a line of the private key itself
        root = Path(lab.state["dir"])
        places = {
            "status": json.dumps(lab.client.status()),
            "nodes": json.dumps(lab.client.nodes()),
            "ledger": json.dumps(lab.client.ledger()),
            "state.json": (root / labdir.STATE).read_text(),
            "lab.log": (root / labdir.LOG).read_text(errors="replace"),
        }
        for where, text in places.items():
            for canary in (secrets[0], secrets[1], key_body):
                assert canary not in text, f"a secret leaked into {where}"
    finally:
        ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
