"""The Swarm deployment file of the lab tests, unchanged, on every OpenStack cloud that
gives nodes (only --site differs): 3 Ready, the service answers by name across the
overlay network and from the host on each public address; down leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.conftest import Cli
from tests.lab.test_compose import deployment, swarm_serves
from tests.openstack.conftest import OsLab, clouds_to_test
from tests.openstack.test_clouds import NOTHING

# Floating IPs on a tenant network, networks told apart by their router, none
# (INTERLOCK_TEST_ALL_CLOUDS=1: all six, about 7 min).
SITES = clouds_to_test(["os-aws-like", "os-tenant", "os-unlabelled"])


@pytest.mark.parametrize("site", SITES)
def test_the_swarm_file_converges_on_each_cloud(
    oslab: OsLab, oscli: Cli, tmp_path: Path, site: str
) -> None:
    path = deployment(tmp_path, "swarm")
    done = oscli.json("apply", str(path), "--site", site)
    assert done["converged"], [(r["node"], r["role"], r["error"]) for r in done["node_roles"]]
    swarm_serves(oscli, done["nodes"])
    oscli("down", "swarm")
    assert oslab.leftovers(site) == NOTHING
