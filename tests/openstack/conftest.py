"""A lab with the seven built-in OpenStack clouds on a real OpenStack, for these tests
only: its own directory, control address (127.160.0.1) and public pools (127.16x)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interlock_lab import labdir
from interlock_lab.client import LabClient, resolve_sites
from interlock_lab.sitefile import builtin_sites
from tests.lab.conftest import Cli

HERE = Path(__file__).parent
CLOUDS = ("os-aws-like", "os-tenant", "os-misnamed", "os-unlabelled", "os-logins",
          "os-halfdone", "os-nofloat")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)
            item.add_marker(pytest.mark.openstack)


class OsLab:
    def __init__(self, client: LabClient) -> None:
        self.client = client
        self.state = client.status()

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
        }


@pytest.fixture(scope="session")
def oslab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OsLab]:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")
    files = tmp_path_factory.mktemp("os-sites")
    paths = []
    for name in CLOUDS:
        text = builtin_sites()[name].read_text().replace("127.6", "127.16")
        (files / f"{name}.yaml").write_text(text)
        paths.append(files / f"{name}.yaml")
    root = Path("/var/tmp") / f"interlock-test-oslab-{os.getpid()}"
    os.environ["INTERLOCK_LAB_OPENSTACK_ADDRESS"] = "127.160.0.1"
    client = LabClient(root)
    client.up(resolve_sites([], paths))
    try:
        yield OsLab(client)
    finally:
        client.down()
        assert not labdir.leftover_processes(root)
        assert not root.exists()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def oscli(oslab: OsLab, tmp_path: Path) -> Iterator[Cli]:
    c = Cli(tmp_path / "home", Path(oslab.state["dir"]) / labdir.SITES)
    yield c
    c("down", "--all", check=False)
