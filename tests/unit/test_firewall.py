"""The one question interlock asks of a node's groups: does TCP 22 come in from the
operator? Each cloud's rules are read into `Ingress`; these are the answers users rely on."""

from __future__ import annotations

import ipaddress

from interlock.firewall import Firewall, Ingress, operator_sources

HOME = [ipaddress.IPv4Network("198.51.100.7/32")]
ANY = (ipaddress.IPv4Network("0.0.0.0/0"),)


def test_a_default_group_admitting_its_members_only_blocks_the_operator() -> None:
    aws_default = Firewall(groups=("sg-1",), rules=(Ingress(protocol="all", sources=None),))
    assert not aws_default.admits(22, HOME)


def test_a_rule_admits_its_protocol_port_range_and_sources_only() -> None:
    ssh_from_home = Ingress(protocol="tcp", ports=(22, 22), sources=tuple(HOME))
    wall = Firewall(rules=(ssh_from_home,))
    assert wall.admits(22, HOME)
    assert not wall.admits(2222, HOME)
    assert not wall.admits(22, [ipaddress.IPv4Network("198.51.100.8/32")])
    assert not Firewall(rules=(Ingress(protocol="udp", ports=(22, 22), sources=ANY),)).admits(
        22, HOME
    )
    assert Firewall(rules=(Ingress(protocol="all", sources=ANY),)).admits(22, HOME)
    assert Firewall(rules=(Ingress(protocol="tcp", ports=(1, 1024), sources=ANY),)).admits(22, HOME)


def test_every_source_must_be_admitted_whole() -> None:
    wall = Firewall(rules=(Ingress(protocol="tcp", ports=(22, 22), sources=tuple(HOME)),))
    both = [*HOME, ipaddress.IPv4Network("203.0.113.0/24")]
    assert not wall.admits(22, both)
    # A /24 is admitted only by a rule covering all of it.
    assert not wall.admits(22, [ipaddress.IPv4Network("198.51.100.0/24")])


def test_a_site_that_filters_nothing_admits_everything() -> None:
    assert Firewall(enforced=False).admits(22, HOME)
    assert not Firewall().admits(22, HOME)  # enforced, no rule: closed


def test_the_operator_is_the_configured_sources_or_this_hosts_address() -> None:
    assert operator_sources(HOME, "127.10.0.5") == HOME
    assert operator_sources([], "127.10.0.5") == [ipaddress.IPv4Network("127.0.0.1/32")]
