"""A Nova compute driver whose servers are interlock lab sandbox nodes.

Nova's fake driver keeps the books (resources, instance list); the lab boots a
real node for each server, on the lab network of the server's Neutron network
with the port's fixed IP, and gives it the keypair's key, the image's login
account and behaviour (the lab knows them from the site file).
"""

from __future__ import annotations

from typing import Any

from nova.virt import fake

from interlock_lab_openstack import labapi


def _ports(network_info: Any) -> list[dict[str, Any]]:
    ports = []
    for vif in network_info or []:
        for ip in vif.fixed_ips():
            if ip["version"] == 4:
                ports.append(
                    {
                        "port_id": vif["id"],
                        "network_id": vif["network"]["id"],
                        "ip": ip["address"],
                        "cidr": next(
                            (
                                s["cidr"]
                                for s in vif["network"]["subnets"]
                                if any(i["address"] == ip["address"] for i in s["ips"])
                            ),
                            None,
                        ),
                    }
                )
    return ports


class LabDriver(fake.FakeDriver):
    def spawn(  # type: ignore[no-untyped-def]
        self,
        context,
        instance,
        image_meta,
        injected_files,
        admin_password,
        allocations,
        network_info=None,
        block_device_info=None,
        power_on=True,
        accel_info=None,
    ):
        labapi.post(
            "/v1/openstack/spawn",
            {
                "server_id": instance.uuid,
                "project_id": instance.project_id,
                "image_id": instance.image_ref,
                "key_data": instance.key_data or "",
                "hostname": instance.hostname,
                "ports": _ports(network_info),
            },
        )
        super().spawn(
            context,
            instance,
            image_meta,
            injected_files,
            admin_password,
            allocations,
            network_info,
            block_device_info,
            power_on,
            accel_info,
        )

    def destroy(  # type: ignore[no-untyped-def]
        self,
        context,
        instance,
        network_info,
        block_device_info=None,
        destroy_disks=True,
        destroy_secrets=True,
    ):
        labapi.post("/v1/openstack/destroy", {"server_id": instance.uuid, "wipe": True})
        super().destroy(
            context, instance, network_info, block_device_info, destroy_disks, destroy_secrets
        )

    def power_off(self, instance, timeout=0, retry_interval=0):  # type: ignore[no-untyped-def]
        labapi.post("/v1/openstack/destroy", {"server_id": instance.uuid, "wipe": False})
        super().power_off(instance, timeout, retry_interval)
