"""Bare metal through Redfish: power on boots the installed OS, power off stops it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import sushy
from sushy.auth import BasicAuth

from tests.lab.conftest import Lab, ssh_ready, ssh_run


def bmc(lab: Lab) -> tuple[sushy.Sushy, dict[str, Any]]:
    info = lab.state["sites"]["metal"]
    password = Path(info["password_file"]).read_text().strip()
    conn = sushy.Sushy(info["endpoint"], auth=BasicAuth(info["username"], password))
    return conn, info


def test_power_on_gives_root_with_the_pool_key_and_power_off_ends_it(lab: Lab) -> None:
    conn, info = bmc(lab)
    machine = info["machines"][0]
    key = asyncssh.read_private_key(info["pool_key"])
    system = conn.get_system(f"/redfish/v1/Systems/{machine['uuid']}")
    assert system.power_state == sushy.PowerState.OFF
    system.reset_system(sushy.ResetType.ON)
    try:
        system.refresh()
        assert system.power_state == sushy.PowerState.ON
        ssh_ready(machine["public_ip"])
        done = ssh_run(
            machine["public_ip"], "root", key, "id -u; hostname; ip -4 -br addr show eth0"
        )
        uid, hostname, eth0 = str(done.stdout).splitlines()
        assert (uid, hostname) == ("0", machine["name"])
        assert machine["private_ip"] in eth0
        assert any(
            e["rid"] == machine["name"] for e in lab.client.ledger("metal", outstanding=True)
        )
    finally:
        system.reset_system(sushy.ResetType.FORCE_OFF)
    system.refresh()
    assert system.power_state == sushy.PowerState.OFF
    with pytest.raises(OSError):
        asyncio.run(asyncio.open_connection(machine["public_ip"], 22))
    assert not lab.client.ledger("metal", outstanding=True)


def test_bmc_needs_its_credentials(lab: Lab) -> None:
    _, info = bmc(lab)
    conn = sushy.Sushy(info["endpoint"], auth=BasicAuth(info["username"], "not-the-password"))
    with pytest.raises(sushy.exceptions.AccessError):
        conn.get_system(f"/redfish/v1/Systems/{info['machines'][0]['uuid']}")
