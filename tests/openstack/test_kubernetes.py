"""The Kubernetes deployment file of the lab tests, unchanged, on OpenStack clouds whose
quirks differ (only --site differs): every worker Ready, the Deployment spread, pod to
pod across nodes, the Services, kubectl from the host, exec and logs; down leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.conftest import Cli
from tests.lab.test_kubernetes import binaries, cluster_serves, converges, deployment
from tests.openstack.conftest import OsLab, clouds_to_test
from tests.openstack.test_clouds import NOTHING

# Floating IPs on a tenant network; networks told apart only by their router; nodes
# straight on a provider network whose name lies (INTERLOCK_TEST_ALL_CLOUDS=1: all six).
SITES = clouds_to_test(["os-tenant", "os-unlabelled", "os-misnamed"])


@pytest.mark.parametrize("site", SITES)
def test_the_kubernetes_file_makes_a_cluster_on_each_cloud(
    oslab: OsLab, oscli: Cli, tmp_path: Path, site: str
) -> None:
    found = binaries()
    done = converges(oscli, deployment(tmp_path, 2, found), site)
    cluster_serves(oscli, done, found, tmp_path)
    oscli("down", "kube")
    assert oslab.leftovers(site) == NOTHING
