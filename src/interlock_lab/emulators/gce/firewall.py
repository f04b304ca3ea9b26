"""Compute Engine firewall rules, enforced by the lab.

A rule belongs to a network and aims at every instance on it, or at those with one of
its target tags; it admits from source ranges, or from instances with one of its source
tags. Ingress is denied where no rule admits (Google's implied rule). The lab's forwarder
asks `GceFirewall` about every new connection to an external address; traffic between
nodes is filtered on the network's bridge (`admitted`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from interlock_lab.emulators.gce.resources import Firewall, Instance
from interlock_lab.fabric.network import Admit

Ports = tuple[int, int] | None


def aimed_at(rule: Firewall, inst: Instance) -> bool:
    if rule.disabled or rule.direction != "INGRESS" or rule.network != inst.network:
        return False
    return not rule.target_tags or bool(set(rule.target_tags) & set(inst.tags))


def port_ranges(rule: Firewall) -> list[Ports]:
    """The TCP port ranges a rule allows (None: every port); none for other protocols."""
    out: list[Ports] = []
    for allowed in rule.allowed:
        proto = str(allowed.get("IPProtocol", "")).lower()
        if proto not in ("tcp", "all", "6"):
            continue
        ports = allowed.get("ports") or []
        if proto == "all" or not ports:
            out.append(None)
            continue
        for p in ports:
            low, _, high = str(p).partition("-")
            out.append((int(low), int(high or low)))
    return out


def _ranges(rule: Firewall) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(s, strict=False) for s in rule.source_ranges if ":" not in s]


def admits(
    rules: Iterable[Firewall], inst: Instance, port: int, source: ipaddress.IPv4Address
) -> bool:
    """A connection from `source` (outside the network) to `port` of `inst`."""
    for rule in rules:
        if not aimed_at(rule, inst) or not any(source in r for r in _ranges(rule)):
            continue
        if any(p is None or p[0] <= port <= p[1] for p in port_ranges(rule)):
            return True
    return False


def admitted(
    rules: list[Firewall], running: list[Instance]
) -> dict[ipaddress.IPv4Address, list[Admit]]:
    """What may open a connection to each running instance of one network."""
    members: dict[str, list[ipaddress.IPv4Network]] = {}
    for inst in running:
        for tag in inst.tags:
            members.setdefault(tag, []).append(ipaddress.IPv4Network(f"{inst.network_ip}/32"))
    out: dict[ipaddress.IPv4Address, list[Admit]] = {}
    for inst in running:
        entries: list[Admit] = []
        for rule in rules:
            if not aimed_at(rule, inst):
                continue
            sources = _ranges(rule) + [n for t in rule.source_tags for n in members.get(t, [])]
            for ports in port_ranges(rule):
                entries.append(Admit(ports, tuple(sources)))
        out[ipaddress.IPv4Address(inst.network_ip)] = entries
    return out
