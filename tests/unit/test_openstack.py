"""The openstack driver through the real openstacksdk, against recorded API responses.

The responses (tests/unit/recorded/openstack/) have the shape Keystone, Nova,
Neutron and Glance return; requests_mock serves them, so everything from
clouds.yaml loading through keystoneauth to the SDK's resources runs for real.
The lab's real OpenStack proves the same driver end to end.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
import requests_mock

from interlock.config import DeclaredProfile, OpenstackSite
from interlock.errors import ExitCode, InterlockError
from interlock.firewall import Firewall, Ingress
from interlock.model import Network, Traits
from interlock.providers.base import (
    AuthError,
    InvalidRequestError,
    NodeRequest,
    NotFoundError,
    ProviderError,
    QuotaError,
    ServerInfo,
    TransientError,
    described,
)
from interlock.providers.openstack import OpenstackProvider
from interlock.selection import choose

RECORDED = Path(__file__).parent / "recorded" / "openstack"
CANARY = "canary-Pa55w0rd-7f3e9c"
NOVA, NEUTRON, GLANCE = "http://nova.test/v2.1", "http://neutron.test/v2.0", "http://glance.test/v2"


def recorded(name: str) -> Any:
    return json.loads((RECORDED / f"{name}.json").read_text())


def error(name: str) -> dict[str, Any]:
    e = recorded("errors")[name]
    return {"status_code": e["status"], "json": e["body"]}


@pytest.fixture
def api() -> Iterator[requests_mock.Mocker]:
    with requests_mock.Mocker() as m:
        m.get("http://keystone.test/v3", json=recorded("identity"))
        m.post(
            "http://keystone.test/v3/auth/tokens",
            json=recorded("token"),
            headers={"X-Subject-Token": "tok-1"},
            status_code=201,
        )
        m.get("http://nova.test/v2.1", json=recorded("compute-version"))
        m.get("http://nova.test/v2.1/", json=recorded("compute-version"))
        m.get("http://glance.test/", json=recorded("image-version"))
        m.get("http://neutron.test/", json=recorded("network-version"))
        m.get(f"{NOVA}/flavors/detail", json=recorded("flavors"))
        m.get(f"{GLANCE}/images", json=recorded("images"))
        m.get(f"{NEUTRON}/networks", json=recorded("networks"))
        m.get(f"{NEUTRON}/routers", json=recorded("routers"))
        m.get(f"{NEUTRON}/ports?device_id=router-1", json=recorded("router-ports"))
        m.get(f"{NOVA}/servers/srv-1", json=recorded("server-active"))
        yield m


@pytest.fixture
def clouds(tmp_path: Path) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        "  acme:\n"
        "    auth:\n"
        "      auth_url: http://keystone.test/v3\n"
        "      username: demo\n"
        f"      password: {CANARY}\n"
        "      project_name: demo\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        "    region_name: RegionOne\n"
        "    identity_api_version: 3\n"
    )
    path.chmod(0o600)
    return path


def provider(clouds: Path, **profile: Any) -> OpenstackProvider:
    cfg = OpenstackSite(
        provider="openstack",
        cloud="acme",
        clouds_file=clouds,
        profile=DeclaredProfile(**profile),
    )
    return OpenstackProvider("acme", cfg)


def test_metadata_is_normalized_and_network_roles_come_from_routers(
    api: requests_mock.Mocker, clouds: Path
) -> None:
    meta = provider(clouds).metadata()
    flavors = {f.name: f for f in meta.flavors}
    assert (flavors["m1.medium"].vcpus, flavors["m1.medium"].ram_mib) == (2, 4096)
    assert flavors["a1.medium"].arch == "arm64" and flavors["g1.xlarge"].gpus == 1
    images = {i.id: i for i in meta.images}
    assert "img-appliance" not in images  # no distro in metadata or name: not selectable
    assert (images["img-noble"].distro, images["img-noble"].version) == ("ubuntu", "24.04")
    assert images["img-noble"].login_hints[0] == "ubuntu"
    assert (images["img-centos"].distro, images["img-centos"].version) == ("centos", "9")
    roles = {n.name: (n.role, n.reaches_outside) for n in meta.networks}
    # Names say nothing: "public" is a floating IP pool, "private" goes nowhere.
    assert roles == {
        "net1": ("private", True),
        "private": ("private", False),
        "public": ("external-usable", True),
        "external": ("external-unusable", True),
        "ext-empty": ("external-unusable", True),
    }
    assert "router1" in next(n.evidence for n in meta.networks if n.name == "net1")
    c = choose("acme", meta, Traits(cpus=2, memory_gib=4, os="ubuntu-24.04"))
    assert (c.flavor.name, c.image.id, c.network and c.network.name) == (
        "m1.medium",
        "img-noble",
        "net1",
    )
    assert c.needs_floating_ip


def test_a_shared_external_network_is_public_whatever_its_name(
    api: requests_mock.Mocker, clouds: Path
) -> None:
    nets = recorded("networks")
    nets["networks"].append(
        {**copy.deepcopy(nets["networks"][3]), "id": "net-prov", "shared": True}
        | {"router:external": True}
    )
    api.get(f"{NEUTRON}/networks", json=nets)
    meta = provider(clouds).metadata()
    c = choose("acme", meta, Traits(os="ubuntu-24.04"))
    assert c.network is not None and (c.network.id, c.network.name) == ("net-prov", "private")
    assert not c.needs_floating_ip


def test_create_node_sends_tags_key_and_network(api: requests_mock.Mocker, clouds: Path) -> None:
    p = provider(clouds)
    meta = p.metadata()
    c = choose("acme", meta, Traits(cpus=2, memory_gib=4))
    api.post(f"{NOVA}/servers", json={"server": {"id": "srv-1", "links": []}}, status_code=202)
    tags = {"interlock:owner": "interlock", "interlock:node": "web-1"}
    request = NodeRequest("web-1", c.image, c.flavor, c.network, "interlock-web-1", tags)
    got = p.create_node(replace(request, token="web-1-acme-wf-1"))
    # Nova answers with the id alone: pending, no address yet; no idempotency token taken.
    assert got == ServerInfo("srv-1", "pending", None, None)
    body = api.request_history[-1].json()["server"]
    assert body["name"] == "web-1" and body["key_name"] == "interlock-web-1"
    assert body["imageRef"] == "img-noble" and body["flavorRef"] == "f-medium"
    assert body["networks"] == [{"uuid": "net-tenant"}] and body["metadata"] == tags
    assert "web-1-acme-wf-1" not in str(api.request_history[-1].body)


def paths(api: requests_mock.Mocker, since: int) -> list[tuple[str, str]]:
    """The requests after the first `since`, as (method, path?query)."""
    return [
        (r.method, r.path + (f"?{r.query}" if r.query else "")) for r in api.request_history[since:]
    ]


def test_describe_nodes_is_one_listing_for_all(api: requests_mock.Mocker, clouds: Path) -> None:
    p = provider(clouds)
    p.metadata()  # which networks are public: read once, before
    fresh = copy.deepcopy(recorded("server-active")["server"])
    fresh |= {"id": "srv-3", "status": "BUILD", "addresses": {}}
    listing = [recorded("server-active")["server"], recorded("server-error")["server"], fresh]
    api.get(f"{NOVA}/servers/detail", json={"servers": listing})
    before = len(api.request_history)
    got = p.describe_nodes(["srv-1", "srv-2", "srv-3", "srv-9"])
    assert paths(api, before) == [("GET", "/v2.1/servers/detail")]
    assert (got["srv-1"].state, got["srv-1"].public_ip) == ("running", "203.0.113.45")
    assert (got["srv-3"].state, got["srv-3"].public_ip, got["srv-3"].error) == (
        "pending",
        None,
        None,
    )
    assert got["srv-9"] == ServerInfo("srv-9", "gone", None, None)  # not listed: deleted
    # ERROR is the node's own failure: carried for it alone, not raised for the batch.
    assert got["srv-2"].state == "pending" and isinstance(got["srv-2"].error, QuotaError)
    assert "No valid host" in str(got["srv-2"].error)
    # One id: the server itself, not the project's listing.
    before = len(api.request_history)
    assert p.describe_nodes(["srv-1"])["srv-1"].state == "running"
    assert paths(api, before) == [("GET", "/v2.1/servers/srv-1")]
    assert p.describe_nodes([]) == {}


def test_describe_prefers_the_floating_address(api: requests_mock.Mocker, clouds: Path) -> None:
    p = provider(clouds)
    info = p.describe_node("srv-1")
    assert (info.state, info.public_ip, info.private_ip) == ("running", "203.0.113.45", "10.0.0.12")
    server = recorded("server-active")
    server["server"]["addresses"]["net1"].pop()  # no floating IP yet
    api.get(f"{NOVA}/servers/srv-1", json=server)
    assert p.describe_node("srv-1").public_ip is None
    api.get(f"{NOVA}/servers/srv-9", **error("nova-not-found"))
    assert p.describe_node("srv-9").state == "gone"


def test_no_valid_host_is_a_capacity_error(api: requests_mock.Mocker, clouds: Path) -> None:
    api.get(f"{NOVA}/servers/srv-2", json=recorded("server-error"))
    with pytest.raises(QuotaError, match="No valid host"):
        provider(clouds).describe_node("srv-2")


def test_floating_ip_is_created_on_the_port_from_the_routers_network(
    api: requests_mock.Mocker, clouds: Path
) -> None:
    api.get(
        f"{NEUTRON}/ports?device_id=srv-1",
        json={"ports": [{"id": "port-9", "network_id": "net-tenant", "device_id": "srv-1"}]},
    )
    api.post(
        f"{NEUTRON}/floatingips",
        json={"floatingip": {"id": "fip-1", "floating_ip_address": "203.0.113.45"}},
        status_code=201,
    )
    assert provider(clouds).attach_public_ip("srv-1") == ("203.0.113.45", "fip-1")
    body = api.request_history[-1].json()["floatingip"]
    # One call: allocated from the network the router uses, bound to the server's port.
    assert (body["floating_network_id"], body["port_id"]) == ("net-ext", "port-9")


def test_declared_floating_network_wins(api: requests_mock.Mocker, clouds: Path) -> None:
    api.get(
        f"{NEUTRON}/ports?device_id=srv-1",
        json={"ports": [{"id": "port-9", "network_id": "net-tenant", "device_id": "srv-1"}]},
    )
    api.post(f"{NEUTRON}/floatingips", **error("neutron-pool-empty"))
    with pytest.raises(QuotaError, match="No more IP addresses"):
        provider(clouds, floating_network="external").attach_public_ip("srv-1")
    assert api.request_history[-1].json()["floatingip"]["floating_network_id"] == "net-dead"


def test_keys_and_find_by_tag(api: requests_mock.Mocker, clouds: Path) -> None:
    p = provider(clouds)
    api.post(
        f"{NOVA}/os-keypairs",
        json={"keypair": {"name": "interlock-web-1", "public_key": "ssh-ed25519 AAAA x"}},
    )
    assert p.register_key("interlock-web-1", "ssh-ed25519 AAAA x") == "interlock-web-1"
    assert api.request_history[-1].json()["keypair"]["public_key"] == "ssh-ed25519 AAAA x"
    # There already (a resumed step does not ask first): the old one goes, this one comes.
    api.post(
        f"{NOVA}/os-keypairs",
        [
            error("nova-keypair-exists"),
            {"json": {"keypair": {"name": "interlock-web-1", "public_key": "ssh-ed25519 BBBB y"}}},
        ],
    )
    api.delete(f"{NOVA}/os-keypairs/interlock-web-1", status_code=202)
    before = len(api.request_history)
    assert p.register_key("interlock-web-1", "ssh-ed25519 BBBB y") == "interlock-web-1"
    assert paths(api, before) == [
        ("POST", "/v2.1/os-keypairs"),
        ("DELETE", "/v2.1/os-keypairs/interlock-web-1"),
        ("POST", "/v2.1/os-keypairs"),
    ]
    assert api.request_history[-1].json()["keypair"]["public_key"] == "ssh-ed25519 BBBB y"
    api.get(
        f"{NOVA}/os-keypairs/interlock-web-1",
        json={"keypair": {"name": "interlock-web-1", "public_key": "ssh-ed25519 AAAA x"}},
    )
    assert p.key_exists("interlock-web-1")
    api.get(f"{NOVA}/os-keypairs/interlock-web-1", **error("nova-not-found"))
    assert not p.key_exists("interlock-web-1")
    listing = {"servers": [recorded("server-active")["server"]]}
    api.get(f"{NOVA}/servers/detail", json=listing)
    assert p.find_node("web-1") == "srv-1"
    other = copy.deepcopy(listing)
    other["servers"][0]["metadata"]["interlock:node"] = "someone-else"
    api.get(f"{NOVA}/servers/detail", json=other)
    assert p.find_node("web-1") is None  # same name, not our tag: not ours


def test_firewalls_of_many_servers_are_two_calls(api: requests_mock.Mocker, clouds: Path) -> None:
    ports = [
        {"id": "port-1", "device_id": "srv-1", "security_group_ids": ["sg-web", "sg-default"],
         "port_security_enabled": True},
        {"id": "port-1b", "device_id": "srv-1", "security_group_ids": [],
         "port_security_enabled": True},  # a second port: the first is the server's
        {"id": "port-2", "device_id": "srv-2", "security_group_ids": ["sg-web"],
         "port_security_enabled": True},
        {"id": "port-3", "device_id": "srv-3", "security_group_ids": ["sg-open"],
         "port_security_enabled": False},
    ]  # fmt: skip
    rules = [
        {"id": "r-1", "security_group_id": "sg-web", "direction": "ingress",
         "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
         "remote_ip_prefix": "198.51.100.7/32"},
        {"id": "r-2", "security_group_id": "sg-default", "direction": "ingress",
         "ethertype": "IPv4", "protocol": None, "remote_group_id": "sg-default"},
    ]  # fmt: skip
    api.get(f"{NEUTRON}/ports", json={"ports": ports})
    api.get(f"{NEUTRON}/security-group-rules", json={"security_group_rules": rules})
    p = provider(clouds)
    before = len(api.request_history)
    walls = p.firewalls(["srv-1", "srv-2", "srv-3", "srv-4"])
    sent = [r.qs for r in api.request_history[before:] if "neutron" in r.url]
    assert len(sent) == 2
    assert sent[0]["device_id"] == ["srv-1", "srv-2", "srv-3", "srv-4"]  # one filter, repeated
    assert sorted(sent[1]["security_group_id"]) == ["sg-default", "sg-web"]  # enforced only
    assert (sent[1]["direction"], sent[1]["ethertype"]) == (["ingress"], ["ipv4"])
    me, elsewhere = [IPv4Network("198.51.100.7/32")], [IPv4Network("192.0.2.1/32")]
    assert walls["srv-1"].groups == ("sg-web", "sg-default") and walls["srv-1"].admits(22, me)
    assert walls["srv-2"].admits(22, me) and not walls["srv-2"].admits(22, elsewhere)
    assert not walls["srv-3"].enforced and walls["srv-3"].groups == ("sg-open",)
    assert "srv-4" not in walls  # no port yet: left out; firewall() says so
    api.get(f"{NEUTRON}/ports", json={"ports": []})
    with pytest.raises(TransientError, match="no port yet"):
        p.firewall("srv-4")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("nova-over-quota", QuotaError),
        ("neutron-fip-quota", QuotaError),
        ("nova-task-state", TransientError),
        ("nova-rate", TransientError),
        ("nova-down", TransientError),
        ("nova-bad-flavor", InvalidRequestError),
        ("nova-not-found", NotFoundError),
    ],
)
def test_api_errors_map_into_the_taxonomy(
    api: requests_mock.Mocker, clouds: Path, name: str, kind: type[ProviderError]
) -> None:
    api.get(f"{NOVA}/flavors/detail", **error(name))
    with pytest.raises(kind) as e:
        provider(clouds).metadata()
    assert str(e.value).startswith("acme: ") and "\n" not in str(e.value)


def test_refused_credentials_are_an_auth_error_and_never_echoed(
    api: requests_mock.Mocker, clouds: Path
) -> None:
    api.post("http://keystone.test/v3/auth/tokens", **error("keystone-denied"))
    with pytest.raises(AuthError) as e:
        provider(clouds).metadata()
    assert CANARY not in str(e.value) and CANARY not in repr(e.value)
    sent = [r for r in api.request_history if r.body and CANARY in str(r.body)]
    assert [r.url for r in sent] == ["http://keystone.test/v3/auth/tokens"]


def test_an_unknown_cloud_entry_is_one_clear_error(clouds: Path) -> None:
    cfg = OpenstackSite(provider="openstack", cloud="nope", clouds_file=clouds)
    with pytest.raises(InterlockError, match="nope") as e:
        OpenstackProvider("acme", cfg).metadata()
    # Bad input (exit 2), fixed in the config: it names the file the cloud is not in.
    assert e.value.code == ExitCode.BAD_INPUT and str(clouds) in str(e.value)
    assert CANARY not in str(e.value)


# -- groups at creation --------------------------------------------------------------

HOME = [IPv4Network("198.51.100.7/32")]
GROUP_TAGS = {"interlock:owner": "interlock", "interlock:deployment": "web"}
GROUPS = "/v2.0/security-groups"


def network(net_id: str) -> dict[str, Any]:
    found = next(n for n in recorded("networks")["networks"] if n["id"] == net_id)
    return {"network": found}


def test_create_node_carries_the_default_group_and_the_requested_ones(
    api: requests_mock.Mocker, clouds: Path
) -> None:
    p = provider(clouds)
    c = choose("acme", p.metadata(), Traits(cpus=2, memory_gib=4))
    api.post(f"{NOVA}/servers", json={"server": {"id": "srv-1", "links": []}}, status_code=202)
    request = NodeRequest("web-1", c.image, c.flavor, c.network, "interlock-web-1", {})
    p.create_node(request)
    assert "security_groups" not in api.request_history[-1].json()["server"]  # the default
    p.create_node(replace(request, groups=("sg-web", "default")))
    # Named, the default would be replaced: it is kept, first, once.
    body = api.request_history[-1].json()["server"]
    assert body["security_groups"] == [{"name": "default"}, {"name": "sg-web"}]


def test_default_firewall_is_the_projects_default_group(
    api: requests_mock.Mocker, clouds: Path
) -> None:
    api.get(f"{NEUTRON}/networks/net-tenant", json=network("net-tenant"))
    api.get(f"{NEUTRON}/security-groups", json=recorded("security-groups-default"))
    p = provider(clouds)
    net = Network(id="net-tenant", name="net1", role="private", evidence="")
    before = len(api.request_history)
    wall = p.default_firewall(net)
    sent = [r for r in api.request_history[before:] if "neutron" in r.url]
    assert [r.path for r in sent] == ["/v2.0/networks/net-tenant", "/v2.0/security-groups"]
    assert sent[1].qs == {"name": ["default"], "project_id": ["p-1"]}  # this project's
    # Its rules came with it: IPv4 ingress from its own members only, SSH closed.
    assert wall.groups == ("sg-default",) and wall.enforced and not wall.admits(22, HOME)
    assert wall.rules == (Ingress(protocol="all", sources=None),)
    # No network chosen ("auto"): the group alone, one call.
    before = len(api.request_history)
    assert p.default_firewall(None) == wall
    assert [r.path for r in api.request_history[before:]] == ["/v2.0/security-groups"]
    # Port security off on the network: nothing filtered, no group asked for.
    off = network("net-tenant")
    off["network"]["port_security_enabled"] = False
    api.get(f"{NEUTRON}/networks/net-tenant", json=off)
    before = len(api.request_history)
    assert p.default_firewall(net) == Firewall(enforced=False)
    assert [r.path for r in api.request_history[before:]] == ["/v2.0/networks/net-tenant"]


def group_api(api: requests_mock.Mocker, listed: list[dict[str, Any]]) -> None:
    made = {"id": "sg-new", "name": "interlock-web", "description": described(GROUP_TAGS)}
    api.get(f"{NEUTRON}/security-groups", json={"security_groups": listed})
    api.post(f"{NEUTRON}/security-groups", json={"security_group": made}, status_code=201)
    api.post(
        f"{NEUTRON}/security-group-rules",
        [
            {"json": {"security_group_rule": {"id": "r-1"}}, "status_code": 201},
            {"status_code": 409, "json": {"NeutronError": {"type": "SecurityGroupRuleExists",
             "message": "Security group rule already exists.", "detail": ""}}},
        ],
    )  # fmt: skip


def test_make_group_reuses_a_group_of_its_name_and_tags(
    api: requests_mock.Mocker, clouds: Path
) -> None:
    p = provider(clouds)
    ours = {"id": "sg-web", "name": "interlock-web", "description": described(GROUP_TAGS)}
    theirs = {"id": "sg-other", "name": "interlock-web", "description": "someone else's"}
    group_api(api, [theirs, ours])
    before = len(api.request_history)
    assert p.make_group("interlock-web", (22,), HOME, GROUP_TAGS, None) == "sg-web"
    sent = [(r.method, r.path) for r in api.request_history[before:] if "neutron" in r.url]
    assert sent == [
        ("GET", "/v2.0/security-groups"),
        ("POST", "/v2.0/security-group-rules"),
        ("POST", "/v2.0/security-group-rules"),  # there already (409): fine
    ]  # no port touched: nothing attached
    ssh, own = (r.json()["security_group_rule"] for r in api.request_history[-2:])
    assert (ssh["security_group_id"], ssh["remote_ip_prefix"]) == ("sg-web", "198.51.100.7/32")
    assert (ssh["port_range_min"], ssh["port_range_max"], ssh["protocol"]) == (22, 22, "tcp")
    assert own["remote_group_id"] == own["security_group_id"] == "sg-web"
    # Only a group of that name that is not ours: a new one, its tags in its description.
    group_api(api, [theirs])
    assert p.make_group("interlock-web", (22,), HOME, GROUP_TAGS, None) == "sg-new"
    (create,) = [r for r in api.request_history if (r.method, r.path) == ("POST", GROUPS)]
    assert create.json()["security_group"] == {
        "name": "interlock-web",
        "description": described(GROUP_TAGS),
    }


def test_open_ports_is_make_group_and_the_ports_update(
    api: requests_mock.Mocker, clouds: Path
) -> None:
    p = provider(clouds)
    group_api(api, [])
    port = {"id": "port-1", "device_id": "srv-1", "security_group_ids": ["sg-default"]}
    api.get(f"{NEUTRON}/ports?device_id=srv-1", json={"ports": [port]})
    api.put(f"{NEUTRON}/ports/port-1", json={"port": port | {"security_group_ids": []}})
    before = len(api.request_history)
    assert p.open_ports("srv-1", "interlock-web", (22,), HOME, GROUP_TAGS) == "sg-new"
    sent = [(r.method, r.path) for r in api.request_history[before:] if "neutron" in r.url]
    assert sent == [
        ("GET", "/v2.0/security-groups"),
        ("POST", "/v2.0/security-groups"),
        ("POST", "/v2.0/security-group-rules"),
        ("POST", "/v2.0/security-group-rules"),
        ("GET", "/v2.0/ports"),
        ("PUT", "/v2.0/ports/port-1"),
    ]
    assert api.request_history[-1].json() == {"port": {"security_groups": ["sg-default", "sg-new"]}}


def test_api_host_is_the_auth_urls(clouds: Path) -> None:
    assert provider(clouds).api_host == "keystone.test"  # no call: the clouds file says
