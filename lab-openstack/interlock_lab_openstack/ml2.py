"""An ML2 mechanism driver for the lab: binds every port (there are no agents), tells
the lab when a floating IP is associated, moved or released, so the lab's fabric
forwards that address to the right node at once, and when security groups and rules
come and go, for the lab's ledger (the lab reads the rules themselves from the API)."""

from __future__ import annotations

import logging
from typing import Any

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins.ml2 import api

from interlock_lab_openstack import labapi

LOG = logging.getLogger(__name__)


class LabMechanismDriver(api.MechanismDriver):
    def initialize(self) -> None:
        for event in (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE):
            registry.subscribe(self._floating_ip, resources.FLOATING_IP, event)
        for resource in (resources.SECURITY_GROUP, resources.SECURITY_GROUP_RULE):
            for event in (events.AFTER_CREATE, events.AFTER_DELETE):
                registry.subscribe(self._security, resource, event)

    def bind_port(self, context: Any) -> None:
        for segment in context.segments_to_bind:
            context.set_binding(
                segment[api.ID],
                portbindings.VIF_TYPE_OVS,
                {portbindings.CAP_PORT_FILTER: True},
                status=constants.PORT_STATUS_ACTIVE,
            )
            return

    def update_port_postcommit(self, context: Any) -> None:
        # A port's security groups (or port security) changed: the lab filters its network.
        port, before = context.current, context.original or {}
        keys = ("security_groups", "port_security_enabled")
        if any(port.get(k) != before.get(k) for k in keys):
            labapi.post_later(
                "/v1/openstack/security",
                {"kind": "port", "event": "updated", "id": port.get("id"),
                 "project_id": port.get("project_id"), "group_id": None},
            )  # fmt: skip

    def _floating_ip(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        state = payload.latest_state if payload is not None else None
        if not state:
            return
        fip = dict(state)
        gone = event == events.AFTER_DELETE
        try:
            labapi.post(
                "/v1/openstack/floating-ip",
                {
                    "id": fip.get("id"),
                    "project_id": fip.get("project_id") or fip.get("tenant_id"),
                    "address": fip.get("floating_ip_address"),
                    "port_id": None if gone else fip.get("port_id"),
                    "event": event,
                },
            )
        except Exception:  # never fail the API call over the lab's bookkeeping
            LOG.exception("interlock lab: floating IP %s not realized", fip.get("id"))

    def _security(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        if payload is None:
            return
        states = [dict(s) for s in (payload.states or ()) if s]
        state = states[-1] if states else {}
        meta = dict(payload.metadata or {})
        if meta.get("is_default") or state.get("name") == "default":
            return  # the cloud's own group of each project: not a resource anyone made
        rule = resource == resources.SECURITY_GROUP_RULE
        labapi.post_later(
            "/v1/openstack/security",
            {
                "kind": "rule" if rule else "group",
                "event": "deleted" if event == events.AFTER_DELETE else "created",
                "id": payload.resource_id,
                "project_id": state.get("project_id") or state.get("tenant_id"),
                "group_id": state.get("security_group_id") or meta.get("security_group_id"),
            },
        )
