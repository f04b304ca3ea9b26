"""The gce driver through the real google-cloud-compute SDK, against recorded REST responses.

requests_mock serves bodies shaped like the Compute Engine v1 REST API's
(tests/unit/recorded/gce/); the SDK's own REST transport, JSON parsing, error
building and operation handling all run for real.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from google.auth.credentials import AnonymousCredentials
from pydantic import ValidationError
from requests_mock import Mocker

from interlock.config import GceSite
from interlock.model import Flavor, Image, Network, Traits
from interlock.providers.base import (
    AuthError,
    InvalidRequestError,
    NodeRequest,
    NotFoundError,
    ProviderError,
    QuotaError,
    ServerInfo,
    TransientError,
)
from interlock.providers.gce import GceProvider
from interlock.providers.gce.provider import TOKENS
from interlock.selection import choose

RECORDED = Path(__file__).parent / "recorded" / "gce"
ROOT = "https://compute.googleapis.com/compute/v1/projects"
API = f"{ROOT}/p"
ZONE = f"{API}/zones/europe-west1-b"
REGION = f"{API}/regions/europe-west1"
LINKS = "https://www.googleapis.com/compute/v1/projects"
UBUNTU = f"{LINKS}/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20250117"
SUBNET = f"{LINKS}/p/regions/europe-west1/subnetworks/default"
PUBLIC = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJm3yc0fFyAdwJ3XrdS1oYzO6e4MnfzsmV7TkhrYO1gU "
    "interlock:web-1"
)


def recorded(name: str) -> Any:
    return json.loads((RECORDED / f"{name}.json").read_text())


def api_error(name: str) -> dict[str, Any]:
    body = recorded(name)
    return {"status_code": body["error"]["code"], "json": body}


ZONE_OP = recorded("operation_running")["name"]
REGION_OP = recorded("operation_region_running")["name"]


def site(**kw: Any) -> GceSite:
    return GceSite(
        provider="gce",
        project="p",
        zone="europe-west1-b",
        image_projects=["ubuntu-os-cloud", "debian-cloud"],
        **kw,
    )


def anonymous() -> AnonymousCredentials:
    return AnonymousCredentials()  # type: ignore[no-untyped-call]


@pytest.fixture
def gce() -> GceProvider:
    return GceProvider("s", site(), credentials=anonymous())


def serve_metadata(m: Mocker, ubuntu: Any = None) -> None:
    m.get(f"{ZONE}/machineTypes", json=recorded("machine_types"))
    m.get(f"{ROOT}/ubuntu-os-cloud/global/images", json=ubuntu or recorded("images_ubuntu"))
    m.get(f"{ROOT}/debian-cloud/global/images", json=recorded("images_debian"))
    m.get(f"{API}/global/networks", json=recorded("networks"))


def node_request(network: Network | None, tags: dict[str, str] | None = None) -> NodeRequest:
    return NodeRequest(
        name="web-1",
        image=Image(
            id=UBUNTU, name="ubuntu-2404-noble-amd64-v20250117", distro="ubuntu", version="24.04"
        ),
        flavor=Flavor(id="e2-medium", name="e2-medium", vcpus=2, ram_mib=4096),
        network=network,
        key_ref="interlock-web-1",
        tags=tags or {"interlock:owner": "interlock", "interlock:node": "web-1"},
        public_key=PUBLIC,
    )


def query(m: Mocker, index: int) -> dict[str, list[str]]:
    return parse_qs(urlparse(m.request_history[index].url).query)


# -- metadata and selection -----------------------------------------------------


def test_metadata_normalizes_machine_types_images_and_networks(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    serve_metadata(requests_mock)
    meta = gce.metadata()

    flavors = {f.id: f for f in meta.flavors}
    assert flavors["e2-medium"] == Flavor(id="e2-medium", name="e2-medium", vcpus=2, ram_mib=4096)
    gpu = flavors["a2-highgpu-1g"]
    assert (gpu.vcpus, gpu.ram_mib, gpu.gpus, gpu.arch) == (12, 87040, 1, "x86_64")
    assert flavors["t2a-standard-2"].arch == "arm64"  # no architecture field: from the series
    assert "n1-ultramem-40" not in flavors  # deprecated machine type

    images = {i.name: i for i in meta.images}
    assert "ubuntu-2404-noble-amd64-v20241219" not in images  # DEPRECATED
    assert "debian-11-bullseye-v20240610" not in images  # OBSOLETE
    noble = images["ubuntu-2404-noble-amd64-v20250117"]
    assert (noble.id, noble.distro, noble.version, noble.arch) == (
        UBUNTU,
        "ubuntu",
        "24.04",
        "x86_64",
    )
    assert noble.login_hints == ("interlock", "ubuntu")  # the metadata-key account first
    assert noble.created == "2025-01-17T09:00:00.000-08:00"
    assert images["ubuntu-2404-noble-arm64-v20250117"].arch == "arm64"
    assert images["ubuntu-2204-jammy-v20250112"].version == "22.04"
    bookworm = images["debian-12-bookworm-v20250113"]
    assert (bookworm.distro, bookworm.version, bookworm.login_hints) == (
        "debian",
        "12",
        ("interlock", "admin", "debian"),
    )

    default, lab = meta.networks  # the project's default network first
    assert (default.name, default.id, default.role) == ("default", SUBNET, "public")
    assert "ONE_TO_ONE_NAT" in default.evidence
    assert (lab.name, lab.role) == ("lab", "external-unusable")  # no subnet in europe-west1
    assert "europe-west1" in lab.evidence

    choice = choose("s", meta, Traits(cpus=2, memory_gib=4, os="ubuntu-24.04"))
    assert choice.flavor.id == "e2-medium"  # not e2-micro (1 GiB), not n2-standard-2 (8 GiB)
    assert choice.image.id == UBUNTU  # the newest active 24.04 amd64 image
    assert choice.network == default and not choice.needs_floating_ip
    arm = choose("s", meta, Traits(cpus=2, memory_gib=4, os="ubuntu-24.04", arch="arm64"))
    assert (arm.flavor.id, arm.image.name) == (
        "t2a-standard-2",
        "ubuntu-2404-noble-arm64-v20250117",
    )


def test_ubuntu_versions_come_from_gce_family_and_name(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    """GCE writes 24.04 as 2404; without a description the family or name still tells."""
    ubuntu = recorded("images_ubuntu")
    for item in ubuntu["items"]:
        item.pop("description")
    ubuntu["items"][1].pop("family")  # only the name left: ubuntu-2404-noble-amd64-v20250110
    serve_metadata(requests_mock, ubuntu)
    versions = {i.name: (i.distro, i.version) for i in gce.metadata().images}
    assert versions["ubuntu-2404-noble-amd64-v20250110"] == ("ubuntu", "24.04")
    assert versions["ubuntu-2404-noble-amd64-v20250117"] == ("ubuntu", "24.04")
    assert versions["ubuntu-2204-jammy-v20250112"] == ("ubuntu", "22.04")


# -- nodes -------------------------------------------------------------------------


def test_create_node_sends_labels_key_metadata_nat_and_waits(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    requests_mock.post(f"{ZONE}/instances", json=recorded("operation_running"))
    requests_mock.post(f"{ZONE}/operations/{ZONE_OP}/wait", json=recorded("operation_done"))
    network = Network(id=SUBNET, name="default", role="public", evidence="")
    tags = {
        "interlock:owner": "interlock",
        "interlock:deployment": "Web.Prod",
        "interlock:node": "web-1",
    }

    request = replace(node_request(network, tags), token="web-1-s-wf-1")
    assert gce.create_node(request) == ServerInfo("web-1", "pending", None, None)

    insert, wait = requests_mock.request_history
    assert (insert.method, wait.method, wait.url) == (
        "POST",
        "POST",
        f"{ZONE}/operations/{ZONE_OP}/wait",
    )
    # The token as a requestId (a UUID, the same for every try): GCE creates once.
    (request_id,) = query(requests_mock, 0)["requestId"]
    assert request_id == str(uuid.uuid5(TOKENS, "web-1-s-wf-1"))
    body = insert.json()
    assert body["name"] == "web-1"
    assert body["machineType"] == "zones/europe-west1-b/machineTypes/e2-medium"
    assert body["labels"] == {
        "interlock-owner": "interlock",
        "interlock-deployment": "web-prod",
        "interlock-node": "web-1",
        "interlock-key": "interlock-web-1",
    }
    items = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert items["ssh-keys"] == f"interlock:{PUBLIC}"
    assert items["enable-oslogin"] == "FALSE"  # OS Login would ignore metadata keys
    (nic,) = body["networkInterfaces"]
    assert nic["subnetwork"] == SUBNET
    assert nic["accessConfigs"] == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    (disk,) = body["disks"]
    assert disk["boot"] and disk["autoDelete"]
    assert disk["initializeParams"] == {"sourceImage": UBUNTU}


def test_operations_are_waited_on_at_the_sites_endpoint(requests_mock: Mocker) -> None:
    """The SDK's ExtendedOperation.result() would poll compute.googleapis.com instead."""
    gce = GceProvider("s", site(endpoint="https://gce.example.test"), credentials=anonymous())
    here = "https://gce.example.test/compute/v1/projects/p/zones/europe-west1-b"
    requests_mock.post(f"{here}/instances", json=recorded("operation_running"))
    requests_mock.post(f"{here}/operations/{ZONE_OP}/wait", json=recorded("operation_done"))
    assert gce.create_node(node_request(None)).server_id == "web-1"
    assert "requestId" not in query(requests_mock, 0)  # no token, no requestId
    hosts = {urlparse(r.url).hostname for r in requests_mock.request_history}
    assert hosts == {"gce.example.test"}
    nic = requests_mock.request_history[0].json()["networkInterfaces"][0]
    assert nic["network"] == "global/networks/default"  # no network chosen


def test_describe_node_maps_status_and_addresses(gce: GceProvider, requests_mock: Mocker) -> None:
    staging = recorded("instance_running")
    staging["status"] = "STAGING"
    del staging["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    stopped = recorded("instance_running") | {"status": "TERMINATED"}
    requests_mock.get(
        f"{ZONE}/instances/web-1",
        [
            {"json": staging},
            {"json": recorded("instance_running")},
            {"json": stopped},
            api_error("error_404"),
        ],
    )
    first, running, halted, gone = (gce.describe_node("web-1") for _ in range(4))
    assert (first.state, first.public_ip, first.private_ip) == ("pending", None, "10.132.0.5")
    assert (running.state, running.public_ip, running.private_ip) == (
        "running",
        "34.76.10.20",
        "10.132.0.5",
    )
    assert halted.state == "stopped"
    assert (gone.server_id, gone.state, gone.public_ip) == ("web-1", "gone", None)


def test_describe_nodes_is_one_filtered_listing(gce: GceProvider, requests_mock: Mocker) -> None:
    other = recorded("instance_running") | {"name": "web-2", "status": "PROVISIONING"}
    other["networkInterfaces"] = []
    listing = {"kind": "compute#instanceList", "items": [recorded("instance_running"), other]}
    requests_mock.get(f"{ZONE}/instances", json=listing)
    got = gce.describe_nodes(["web-1", "web-2", "web-3"])
    assert requests_mock.call_count == 1
    assert query(requests_mock, 0)["filter"] == [
        '(name = "web-1") OR (name = "web-2") OR (name = "web-3")'
    ]
    assert got == {
        "web-1": ServerInfo("web-1", "running", "34.76.10.20", "10.132.0.5"),
        "web-2": ServerInfo("web-2", "pending", None, None),
        "web-3": ServerInfo("web-3", "gone", None, None),  # not listed: not there
    }


def test_find_node_needs_the_ownership_label(gce: GceProvider, requests_mock: Mocker) -> None:
    foreign = recorded("instance_running")
    foreign["labels"] = {"team": "other"}
    requests_mock.get(
        f"{ZONE}/instances/web-1",
        [{"json": recorded("instance_running")}, {"json": foreign}, api_error("error_404")],
    )
    assert gce.find_node("web-1") == "web-1"
    assert gce.find_node("web-1") is None  # same name, not ours: create will say so
    assert gce.find_node("web-1") is None


def test_delete_node_waits_and_ignores_a_missing_node(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    requests_mock.delete(
        f"{ZONE}/instances/web-1",
        [{"json": recorded("operation_running")}, api_error("error_404")],
    )
    requests_mock.post(f"{ZONE}/operations/{ZONE_OP}/wait", json=recorded("operation_done"))
    gce.delete_node("web-1")
    assert [r.method for r in requests_mock.request_history] == ["DELETE", "POST"]
    gce.delete_node("web-1")  # already gone: nothing to do


# -- keys --------------------------------------------------------------------------


def test_key_lives_in_instance_metadata_until_deleted(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    with_key = recorded("instance_running")
    without = recorded("instance_running")
    without["metadata"]["items"] = [{"key": "enable-oslogin", "value": "FALSE"}]
    without["metadata"]["fingerprint"] = "Nw4qz3Hm2Ss="
    listing = {"kind": "compute#instanceList", "id": "projects/p/zones/europe-west1-b/instances"}
    requests_mock.get(
        f"{ZONE}/instances",
        [
            {"json": listing | {"items": [with_key]}},  # key_exists
            {"json": listing | {"items": [with_key]}},  # delete_key
            {"json": listing | {"items": [without]}},  # key_exists, after
        ],
    )
    requests_mock.post(f"{ZONE}/instances/web-1/setMetadata", json=recorded("operation_running"))
    requests_mock.post(f"{ZONE}/operations/{ZONE_OP}/wait", json=recorded("operation_done"))

    assert gce.register_key("interlock-web-1", PUBLIC) == "interlock-web-1"
    assert requests_mock.call_count == 0  # no key API: the key goes in with the instance
    assert gce.key_exists("interlock-web-1")
    assert query(requests_mock, 0)["filter"] == ['labels.interlock-key = "interlock-web-1"']

    gce.delete_key("interlock-web-1")
    set_metadata = requests_mock.request_history[2]  # after key_exists' and delete_key's lists
    assert set_metadata.url.startswith(f"{ZONE}/instances/web-1/setMetadata")
    assert set_metadata.json() == {
        "fingerprint": "qRrJVTZB1lE=",  # the fingerprint read: a concurrent change fails it
        "items": [{"key": "enable-oslogin", "value": "FALSE"}],
    }
    assert requests_mock.request_history[3].url == f"{ZONE}/operations/{ZONE_OP}/wait"
    assert not gce.key_exists("interlock-web-1")


def test_key_exists_is_false_without_labelled_instances(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    requests_mock.get(f"{ZONE}/instances", json={"kind": "compute#instanceList"})
    assert not gce.key_exists("interlock-web-1")
    gce.delete_key("interlock-web-1")  # nothing to rewrite
    assert [r.method for r in requests_mock.request_history] == ["GET", "GET"]


# -- public addresses --------------------------------------------------------------


def test_attach_public_ip_swaps_in_a_static_address(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    reserved = recorded("address_in_use") | {"status": "RESERVED"}
    del reserved["users"]
    requests_mock.post(f"{REGION}/addresses", json=recorded("operation_region_running"))
    requests_mock.post(
        f"{REGION}/operations/{REGION_OP}/wait", json=recorded("operation_region_done")
    )
    requests_mock.get(f"{REGION}/addresses/web-1-ip", json=reserved)
    requests_mock.get(f"{ZONE}/instances/web-1", json=recorded("instance_running"))
    requests_mock.post(
        f"{ZONE}/instances/web-1/deleteAccessConfig", json=recorded("operation_done")
    )
    requests_mock.post(f"{ZONE}/instances/web-1/addAccessConfig", json=recorded("operation_done"))

    assert gce.attach_public_ip("web-1") == ("35.205.1.2", "web-1-ip")

    calls = [
        (r.method, urlparse(r.url).path.rsplit("/", 1)[-1]) for r in requests_mock.request_history
    ]
    assert calls == [
        ("POST", "addresses"),
        ("POST", "wait"),
        ("GET", "web-1-ip"),
        ("GET", "web-1"),
        ("POST", "deleteAccessConfig"),  # the ephemeral address goes first
        ("POST", "addAccessConfig"),
    ]
    assert requests_mock.request_history[0].json()["name"] == "web-1-ip"
    assert query(requests_mock, 4) == {
        "accessConfig": ["External NAT"],
        "networkInterface": ["nic0"],
    }
    assert query(requests_mock, 5) == {"networkInterface": ["nic0"]}
    assert requests_mock.request_history[5].json() == {
        "name": "External NAT",
        "type": "ONE_TO_ONE_NAT",
        "natIP": "35.205.1.2",
    }


def test_attach_public_ip_repeated_reuses_the_address(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    """A step run again after a crash: the address exists and is attached already."""
    attached = recorded("instance_running")
    attached["networkInterfaces"][0]["accessConfigs"][0]["natIP"] = "35.205.1.2"
    requests_mock.post(f"{REGION}/addresses", **api_error("error_409"))
    requests_mock.get(f"{REGION}/addresses/web-1-ip", json=recorded("address_in_use"))
    requests_mock.get(f"{ZONE}/instances/web-1", json=attached)

    assert gce.attach_public_ip("web-1") == ("35.205.1.2", "web-1-ip")
    assert [r.method for r in requests_mock.request_history] == ["POST", "GET", "GET"]


def test_release_public_ip_detaches_then_deletes(gce: GceProvider, requests_mock: Mocker) -> None:
    holder = recorded("instance_running")
    holder["networkInterfaces"][0]["accessConfigs"][0]["natIP"] = "35.205.1.2"
    requests_mock.get(
        f"{REGION}/addresses/web-1-ip",
        [{"json": recorded("address_in_use")}, api_error("error_404")],
    )
    requests_mock.get(f"{ZONE}/instances/web-1", json=holder)
    requests_mock.post(
        f"{ZONE}/instances/web-1/deleteAccessConfig", json=recorded("operation_done")
    )
    requests_mock.delete(f"{REGION}/addresses/web-1-ip", json=recorded("operation_region_done"))

    gce.release_public_ip("web-1-ip")
    assert [r.method for r in requests_mock.request_history] == ["GET", "GET", "POST", "DELETE"]
    assert query(requests_mock, 2)["accessConfig"] == ["External NAT"]

    gce.release_public_ip("web-1-ip")  # released already: nothing to do
    assert requests_mock.call_count == 5


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("error_401", AuthError),
        ("error_403_forbidden", AuthError),
        ("error_403_rate_limit", TransientError),  # GCE throttles with 403 rateLimitExceeded
        ("error_503", TransientError),
        ("error_400", InvalidRequestError),
        ("error_404", NotFoundError),
    ],
)
def test_api_errors_map_into_the_taxonomy(
    gce: GceProvider, requests_mock: Mocker, name: str, kind: type[ProviderError]
) -> None:
    requests_mock.get(f"{ZONE}/machineTypes", **api_error(name))
    with pytest.raises(ProviderError) as e:
        gce.metadata()
    assert type(e.value) is kind
    assert str(e.value).startswith("s: ") and "\n" not in str(e.value)
    assert requests_mock.call_count == 1  # no SDK retries: interlock retries transient itself


def test_a_stockout_in_the_operation_is_a_quota_error(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    requests_mock.post(f"{ZONE}/instances", json=recorded("operation_running"))
    requests_mock.post(
        f"{ZONE}/operations/{ZONE_OP}/wait", json=recorded("operation_pool_exhausted")
    )
    with pytest.raises(ProviderError) as e:
        gce.create_node(node_request(None))
    assert type(e.value) is QuotaError  # the operation says 503, but another site may have room
    assert str(e.value).startswith("s: ") and "ZONE_RESOURCE_POOL_EXHAUSTED" in str(e.value)


def test_address_quota_is_a_quota_error_and_nothing_is_left(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    requests_mock.post(f"{REGION}/addresses", **api_error("error_403_quota"))
    requests_mock.get(f"{REGION}/addresses/web-1-ip", **api_error("error_404"))
    with pytest.raises(ProviderError) as e:
        gce.attach_public_ip("web-1")
    assert type(e.value) is QuotaError
    assert str(e.value).startswith("s: ") and "STATIC_ADDRESSES" in str(e.value)


def test_connection_failures_are_transient(gce: GceProvider, requests_mock: Mocker) -> None:
    requests_mock.get(f"{ZONE}/instances/web-1", exc=requests.exceptions.ConnectTimeout)
    with pytest.raises(TransientError) as e:
        gce.describe_node("web-1")
    assert str(e.value).startswith("s: ")


# -- credentials -------------------------------------------------------------------

CANARY_KEY_ID = "c4a7a7c0ffee5ecre7000000000000000000ca9a"


def service_account_file(tmp_path: Path) -> tuple[Path, str]:
    """A throwaway service-account key file; returns it and a line of its private key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    info = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": CANARY_KEY_ID,
        "private_key": pem,
        "client_email": "interlock@p.iam.gserviceaccount.com",
        "client_id": "104729384756102938475",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    return path, pem.splitlines()[1]


def messages(err: BaseException | None) -> str:
    """Every message in an exception's chain, cause and context included."""
    seen = []
    while err is not None:
        seen += [str(err), repr(err.args)]
        err = err.__cause__ or err.__context__
    return "\n".join(seen)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("error_401", AuthError),
        ("error_403_forbidden", AuthError),
        ("error_400", InvalidRequestError),
    ],
)
def test_credentials_never_appear_in_errors(
    tmp_path: Path, requests_mock: Mocker, name: str, kind: type[ProviderError]
) -> None:
    path, secret = service_account_file(tmp_path)
    gce = GceProvider("s", site(credentials_file=path))
    requests_mock.get(f"{ZONE}/machineTypes", **api_error(name))

    with pytest.raises(ProviderError) as e:
        gce.metadata()

    assert type(e.value) is kind and str(e.value).startswith("s: ")
    # The key file was used: the SDK signs its own JWT (no token endpoint), keyed by key id.
    bearer = requests_mock.request_history[0].headers["Authorization"].removeprefix("Bearer ")
    header = json.loads(base64.urlsafe_b64decode(bearer.split(".")[0] + "=="))
    assert header["kid"] == CANARY_KEY_ID
    text = messages(e.value)
    for canary in (CANARY_KEY_ID, secret, bearer):
        assert canary not in text


def test_an_unreadable_key_file_is_an_auth_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ValidationError, match="no such file"):
        site(credentials_file=missing)  # refused when the sites file is read
    # A file gone since then: the provider's error names it, and is an auth error.
    gone = site().model_copy(update={"credentials_file": missing})
    gce = GceProvider("s", gone)
    with pytest.raises(AuthError) as e:
        gce.describe_node("web-1")
    assert str(e.value).startswith("s: ") and "missing.json" in str(e.value)


# -- firewall rules ---------------------------------------------------------------------

SOURCE = [ipaddress.IPv4Network("198.51.100.7/32")]


def test_the_firewall_rules_aimed_at_a_node_decide_ssh(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    requests_mock.get(f"{ZONE}/instances/web-1", json=recorded("instance_running"))
    requests_mock.get(f"{API}/global/firewalls", json=recorded("firewalls"))
    wall = gce.firewall("web-1")
    # The default network's rules apply; the custom network's and those aimed at the tag
    # `web` (the node has no tags) do not.
    assert set(wall.groups) == {
        "default-allow-ssh", "default-allow-internal", "default-allow-icmp"
    }  # fmt: skip
    assert wall.admits(22, SOURCE)
    assert not wall.admits(8080, SOURCE)
    assert wall.admits(8080, [ipaddress.IPv4Network("10.132.0.5/32")])  # internal range

    # A network without default-allow-ssh (a custom one): SSH is blocked.
    rules = recorded("firewalls")
    rules["items"] = [r for r in rules["items"] if r["name"] != "default-allow-ssh"]
    requests_mock.get(f"{API}/global/firewalls", json=rules)
    assert not gce.firewall("web-1").admits(22, SOURCE)


def test_firewalls_of_many_nodes_are_two_calls(gce: GceProvider, requests_mock: Mocker) -> None:
    tagged = recorded("instance_running") | {"name": "web-2"}
    tagged["tags"] = {"items": ["web"], "fingerprint": "x"}
    listing = {"kind": "compute#instanceList", "items": [recorded("instance_running"), tagged]}
    requests_mock.get(f"{ZONE}/instances", json=listing)
    requests_mock.get(f"{API}/global/firewalls", json=recorded("firewalls"))
    walls = gce.firewalls(["web-1", "web-2", "web-3"])
    assert [urlparse(r.url).path.rsplit("/", 1)[-1] for r in requests_mock.request_history] == [
        "instances",
        "firewalls",
    ]
    assert set(walls) == {"web-1", "web-2"}  # web-3 is not there: left out
    assert set(walls["web-2"].groups) - set(walls["web-1"].groups) == {"web-8080"}  # tag `web`
    assert walls["web-2"].admits(8080, SOURCE) and not walls["web-1"].admits(8080, SOURCE)
    requests_mock.get(f"{ZONE}/instances/web-1", json=recorded("instance_running"))
    assert gce.firewall("web-1") == walls["web-1"]  # one node: the same answer


def test_opening_ssh_adds_tagged_rules_and_the_network_tag(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    global_op = recorded("operation_global_done")
    requests_mock.get(f"{ZONE}/instances/web-1", json=recorded("instance_running"))
    requests_mock.post(f"{API}/global/firewalls", json=global_op)
    requests_mock.post(f"{ZONE}/instances/web-1/setTags", json=recorded("operation_done"))
    tags = {"interlock:owner": "interlock", "interlock:deployment": "web"}
    assert gce.open_ports("web-1", "interlock-web", (22,), SOURCE, tags) == "interlock-web"
    inserts = [r.json() for r in requests_mock.request_history if r.path.endswith("/firewalls")]
    ssh, internal = inserts
    assert ssh["name"] == "interlock-web-ssh" and ssh["sourceRanges"] == ["198.51.100.7/32"]
    assert ssh["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
    assert ssh["targetTags"] == ["interlock-web"]
    assert internal["sourceTags"] == internal["targetTags"] == ["interlock-web"]
    assert "interlock:deployment=web" in ssh["description"].split()
    (set_tags,) = [r for r in requests_mock.request_history if r.path.endswith("/settags")]
    assert set_tags.json() == {"fingerprint": "42WmSpB8rSM=", "items": ["interlock-web"]}


# -- groups at creation: network tags ---------------------------------------------------

TAGS = {"interlock:owner": "interlock", "interlock:deployment": "web"}
DEFAULT_NET = Network(id=SUBNET, name="default", role="public", evidence="")


def test_create_node_carries_the_requested_network_tags(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    requests_mock.post(f"{ZONE}/instances", json=recorded("operation_done"))
    gce.create_node(node_request(DEFAULT_NET))
    assert "tags" not in requests_mock.request_history[-1].json()  # the default: none
    gce.create_node(replace(node_request(DEFAULT_NET), groups=("interlock-web",)))
    # The rules aimed at the tag apply from the start: no setTags afterwards.
    assert requests_mock.request_history[-1].json()["tags"] == {"items": ["interlock-web"]}


def test_default_firewall_is_the_networks_rules_aimed_at_every_instance(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    requests_mock.get(f"{API}/global/firewalls", json=recorded("firewalls"))
    wall = gce.default_firewall(DEFAULT_NET)
    assert requests_mock.call_count == 1  # the project's rules, read now
    # Not `web-8080` (aimed at a tag), not the custom network's rules.
    assert set(wall.groups) == {
        "default-allow-ssh", "default-allow-internal", "default-allow-icmp"
    }  # fmt: skip
    assert wall.admits(22, SOURCE) and not wall.admits(8080, SOURCE)
    assert gce.default_firewall(None) == wall  # no network chosen: the default network
    legacy = Network(id=f"{LINKS}/p/global/networks/custom", name="custom", role="public",
                     evidence="")  # fmt: skip
    assert gce.default_firewall(legacy).groups == ("custom-allow-ssh",)
    rules = recorded("firewalls")
    rules["items"] = [r for r in rules["items"] if r["name"] != "default-allow-ssh"]
    requests_mock.get(f"{API}/global/firewalls", json=rules)
    assert not gce.default_firewall(DEFAULT_NET).admits(22, SOURCE)


def test_make_group_inserts_the_tags_rules_or_finds_them_there(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    requests_mock.post(f"{API}/global/firewalls", json=recorded("operation_global_done"))
    assert gce.make_group("interlock-web", (22,), SOURCE, TAGS, DEFAULT_NET) == "interlock-web"
    # Two rules on the node's network, and nothing else: no instance read or tagged.
    assert [r.method for r in requests_mock.request_history] == ["POST", "POST"]
    ssh, internal = (r.json() for r in requests_mock.request_history)
    assert ssh["network"] == internal["network"] == "projects/p/global/networks/default"
    assert ssh["name"] == "interlock-web-ssh" and ssh["sourceRanges"] == ["198.51.100.7/32"]
    assert (
        ssh["targetTags"] == internal["sourceTags"] == internal["targetTags"] == ["interlock-web"]
    )
    assert "interlock:deployment=web" in ssh["description"].split()
    # Made before (by another node, another run): reused by its name.
    requests_mock.post(f"{API}/global/firewalls", **api_error("error_409_firewall"))
    assert gce.make_group("interlock-web", (22,), SOURCE, TAGS, None) == "interlock-web"
    assert requests_mock.request_history[-1].json()["network"] == (
        "projects/p/global/networks/default"
    )


def test_api_host_is_the_endpoints() -> None:
    assert GceProvider("s", site(), credentials=anonymous()).api_host == "compute.googleapis.com"
    here = GceProvider("s", site(endpoint="https://gce.example.test:8443"), credentials=anonymous())
    assert here.api_host == "gce.example.test"


# -- anonymous credentials (an endpoint of one's own, like the lab's) -----------------------


def test_anonymous_credentials_send_no_authorization(requests_mock: Mocker) -> None:
    lab = site(endpoint="http://127.0.0.1:8080", credentials="anonymous")
    here = "http://127.0.0.1:8080/compute/v1/projects/p/zones/europe-west1-b"
    requests_mock.get(f"{here}/instances/web-1", json=recorded("instance_running"))
    assert GceProvider("s", lab).describe_node("web-1").state == "running"
    assert "Authorization" not in requests_mock.request_history[0].headers


@pytest.mark.parametrize(
    ("kw", "problem"),
    [
        ({"credentials": "anonymous"}, "anonymous needs an endpoint of its own"),
        (
            {
                "credentials": "anonymous",
                "endpoint": "http://127.0.0.1:1",
                "credentials_file": Path(__file__),
            },
            "anonymous takes no credentials_file",
        ),
        ({"credentials": "none"}, "'default' or 'anonymous'"),
    ],
)
def test_anonymous_credentials_are_for_an_endpoint_of_ones_own(
    kw: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        site(**kw)


def test_an_organisation_policy_refusal_is_not_transient(
    gce: GceProvider, requests_mock: Mocker
) -> None:
    """412 conditionNotMet is a stale fingerprint (retried) or an organisation policy's
    constraint (never changes on a retry)."""
    text = (
        "Constraint constraints/compute.requireOsLogin violated for project p. OS Login "
        "is enforced: metadata 'enable-oslogin' cannot be set to FALSE."
    )
    refusal = {
        "error": {
            "code": 412,
            "message": text,
            "errors": [{"message": text, "domain": "global", "reason": "conditionNotMet"}],
        }
    }
    requests_mock.post(f"{ZONE}/instances", status_code=412, json=refusal)
    with pytest.raises(ProviderError) as e:
        gce.create_node(node_request(None))
    assert type(e.value) is InvalidRequestError
    assert "compute.requireOsLogin" in str(e.value)
    stale = json.loads(
        json.dumps(refusal).replace(
            text, "Supplied fingerprint does not match current metadata fingerprint."
        )
    )
    requests_mock.post(f"{ZONE}/instances", status_code=412, json=stale)
    with pytest.raises(TransientError):
        gce.create_node(node_request(None))
