"""A lab with the seven built-in OpenStack clouds on a real OpenStack, for these tests
only: its own directory, and addresses the lab claims for itself (the built-in ones, or
others where another lab runs, see interlock_lab.claims)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interlock_lab.client import LabClient
from interlock_lab.sitefile import builtin_of_kind, builtin_sites
from tests.lab.conftest import Cli, lab_cli, running_lab

HERE = Path(__file__).parent
CLOUDS = builtin_of_kind("openstack")
# Every cloud that gives nodes (os-nofloat has no floating IP to give).
GIVE_NODES = ["os-aws-like", "os-tenant", "os-misnamed", "os-unlabelled", "os-logins",
              "os-halfdone"]  # fmt: skip


def clouds_to_test(default: list[str]) -> list[str]:
    """Every cloud that gives nodes with INTERLOCK_TEST_ALL_CLOUDS=1, else `default`:
    clouds whose quirks differ most, to keep CI's time."""
    return GIVE_NODES if os.environ.get("INTERLOCK_TEST_ALL_CLOUDS") == "1" else default


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)
            item.add_marker(pytest.mark.openstack)


class OsLab:
    def __init__(self, client: LabClient) -> None:
        self.client = client
        self.state = client.status()

    def pool(self, site: str) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.state["sites"][site]["public_pool"])

    def conn(self, site: str) -> Any:
        """openstacksdk as the site's own user, through its clouds.yaml."""
        from openstack import connection
        from openstack.config import loader

        cfg = loader.OpenStackConfig(
            config_files=[self.state["sites"][site]["clouds_file"]]
        ).get_one(cloud=site)
        return connection.Connection(config=cfg)

    def leftovers(self, site: str) -> dict[str, list[str]]:
        """What the site's project still holds that a node would have left."""
        c = self.conn(site)
        return {
            "servers": [s.id for s in c.compute.servers()],
            "keypairs": [k.name for k in c.compute.keypairs()],
            "floating_ips": [f.floating_ip_address for f in c.network.ips()],
            "ports": [p.id for p in c.network.ports() if p.device_owner.startswith("compute:")],
            "security_groups": [g.name for g in c.network.security_groups() if g.name != "default"],
        }


@pytest.fixture(scope="session")
def oslab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OsLab]:
    with running_lab("oslab", [builtin_sites()[name] for name in CLOUDS]) as client:
        yield OsLab(client)


@pytest.fixture
def oscli(oslab: OsLab, tmp_path: Path) -> Iterator[Cli]:
    with lab_cli(oslab.state, tmp_path / "home") as c:
        yield c
