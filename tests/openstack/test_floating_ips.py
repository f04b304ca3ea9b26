"""Neutron floating IPs realized by the lab's fabric: associate, move, release, live; and
Neutron's security groups deciding what reaches a server through one."""

from __future__ import annotations

import asyncssh
import pytest

from tests.lab.conftest import answers_ssh, ssh_ready, ssh_run, wait_for
from tests.openstack.conftest import OsLab


def test_a_floating_ip_moves_live_between_servers(oslab: OsLab) -> None:
    c = oslab.conn("os-tenant")
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = key.export_public_key().decode()
    c.compute.create_keypair(name="fip-test", public_key=public)
    # SSH from the host: the project's default group admits only its own members.
    ssh = c.network.create_security_group(name="fip-ssh", description="tests")
    c.network.create_security_group_rule(
        security_group_id=ssh.id, direction="ingress", ether_type="IPv4", protocol="tcp",
        port_range_min=22, port_range_max=22, remote_ip_prefix="127.0.0.0/8",
    )  # fmt: skip
    servers, fip = [], None
    try:
        image = c.image.find_image("ubuntu-24.04-server-cloudimg")
        flavor = c.compute.find_flavor("b.small")
        net = c.network.find_network("tenant-net")
        for i in range(2):
            servers.append(
                c.compute.create_server(
                    name=f"fip-{i}",
                    image_id=image.id,
                    flavor_id=flavor.id,
                    networks=[{"uuid": net.id}],
                    key_name="fip-test",
                )
            )
        servers = [c.compute.wait_for_server(s, wait=120) for s in servers]
        ports = [next(iter(c.network.ports(device_id=s.id))) for s in servers]
        ext = c.network.find_network("ext-net")
        # Created bound to the first server's port in one call.
        fip = c.network.create_ip(floating_network_id=ext.id, port_id=ports[0].id)
        ip = fip.floating_ip_address
        assert not answers_ssh(ip)  # the default group only
        for port in ports:
            c.network.update_port(port, security_group_ids=[*port.security_group_ids, ssh.id])
        ssh_ready(ip)
        assert str(ssh_run(ip, "ubuntu", key, "hostname").stdout).strip() == "fip-0"
        # Between servers, Neutron's groups hold too: the default group admits its members;
        # B without it (SSH from the host only) is closed to A a moment later.
        (b_ip,) = [f["ip_address"] for f in ports[1].fixed_ips]
        probe = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{b_ip}/22 && head -c 7 <&3'"
        assert str(ssh_run(ip, "ubuntu", key, probe).stdout) == "SSH-2.0"
        c.network.update_port(ports[1], security_group_ids=[ssh.id])
        wait_for("B closed to A", lambda: ssh_run(ip, "ubuntu", key, probe).exit_status != 0)
        c.network.update_ip(fip, port_id=ports[1].id)  # re-associated: the next login lands on B
        assert str(ssh_run(ip, "ubuntu", key, "hostname").stdout).strip() == "fip-1"
        c.network.update_ip(fip, port_id=None)  # disassociated: nothing answers any more
        with pytest.raises((OSError, asyncssh.Error)):
            ssh_run(ip, "ubuntu", key, "hostname", timeout=3)
    finally:
        if fip is not None:
            c.network.delete_ip(fip)
        for s in servers:
            c.compute.delete_server(s)
            c.compute.wait_for_delete(s, wait=120)
        c.compute.delete_keypair("fip-test")
        c.network.delete_security_group(ssh)
    # The ML2 driver reports groups and rules as they go, a moment after the API answers.
    wait_for("nothing outstanding", lambda: not oslab.client.ledger("os-tenant", outstanding=True))
