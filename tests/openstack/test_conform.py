"""`interlock conform` over the seven OpenStack clouds, against the aws yardstick's
absence here (no baseline): every verdict is the one the cloud's site file says."""

from __future__ import annotations

import json

from interlock_lab.sitefile import builtin_sites, load_site_file
from tests.lab.conftest import Cli
from tests.openstack.conftest import CLOUDS, OsLab


def test_every_cloud_gets_its_ground_truth_verdicts(oslab: OsLab, oscli: Cli) -> None:
    done = oscli("conform", "run", *CLOUDS, "--baseline", "os-aws-like", "--json", check=False)
    assert done.returncode == 1  # os-nofloat cannot give a public address: it fails
    report = json.loads(done.stdout)
    for site in CLOUDS:
        truth = load_site_file(builtin_sites()[site]).ground_truth.capabilities
        got = {c: v["verdict"] for c, v in report["sites"][site]["capabilities"].items()}
        assert got == truth, site
        assert report["sites"][site]["verdict"] == ("fail" if site == "os-nofloat" else "pass")
        assert oslab.leftovers(site) == {
            "servers": [], "keypairs": [], "floating_ips": [], "ports": [], "security_groups": []
        }  # fmt: skip
    tenant = report["sites"]["os-tenant"]["capabilities"]["public-address"]
    assert tenant["verdict"] == "PARTIAL" and tenant["fixups"] == ["floating IP allocated"]
    # Neutron's default group admits only its own members: interlock opened SSH, and says so.
    ssh = report["sites"]["os-aws-like"]["capabilities"]["ssh-admitted-by-default"]
    assert ssh["verdict"] == "PARTIAL"
    assert ssh["fixups"] == ["security group allowing SSH from 127.0.0.1/32 created"]
