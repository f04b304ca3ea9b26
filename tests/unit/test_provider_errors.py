"""Every SDK error lands in one taxonomy; errors survive the durable store (pickling)."""

from __future__ import annotations

import ipaddress
import pickle
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.parsers import ResponseParserError
from botocore.stub import Stubber

from interlock.config import AwsSite
from interlock.model import Flavor, Image
from interlock.providers.aws import AwsProvider, cloud_config
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


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "RunInstances",
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("AuthFailure", 401), AuthError),
        (client_error("InsufficientInstanceCapacity", 500), QuotaError),
        (client_error("AddressLimitExceeded"), QuotaError),
        (client_error("InvalidInstanceID.NotFound"), NotFoundError),
        (client_error("RequestLimitExceeded", 503), TransientError),
        (client_error("SomethingOdd", 502), TransientError),
        (client_error("InvalidParameterValue"), InvalidRequestError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), TransientError),
        # A body that does not parse (a proxy's page, a cut reply): worth another try.
        (ResponseParserError("Unable to parse response\n<html>oops</html>"), TransientError),
    ],
)
def test_aws_errors_map_into_the_taxonomy(error: Exception, kind: type[ProviderError]) -> None:
    provider = AwsProvider(
        "s", AwsSite(provider="aws", region="us-east-1", endpoint="http://127.0.0.1:9")
    )

    def boom() -> None:
        raise error

    with pytest.raises(kind) as e:
        provider._call(boom)
    assert str(e.value).startswith("s: ")
    assert "<html>" not in str(e.value)  # one line, not the body that did not parse


def test_provider_errors_pickle_as_they_were() -> None:
    err = QuotaError("site-a", "no capacity")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is QuotaError and str(back) == str(err) and back.site == "site-a"


# -- EC2's calls per node: what each operation sends (botocore's Stubber checks the shapes) --


@pytest.fixture
def ec2() -> Iterator[tuple[AwsProvider, Stubber]]:
    site = AwsSite(
        provider="aws", region="us-east-1", endpoint="http://127.0.0.1:9", node_key="key-pair"
    )
    provider = AwsProvider("s", site)
    with Stubber(provider.ec2) as stub:
        yield provider, stub
        stub.assert_no_pending_responses()


def instance(server_id: str, state: str, public: str | None = None, **more: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "InstanceId": server_id,
        "State": {"Name": state, "Code": 0},
        "PrivateIpAddress": "10.0.0.5",
        **more,
    }
    if public:
        found["PublicIpAddress"] = public
    return found


def reservations(*instances: dict[str, Any]) -> dict[str, Any]:
    return {"Reservations": [{"ReservationId": "r-1", "Instances": list(instances)}]}


def test_create_node_sends_the_token_and_tells_what_run_instances_said(
    ec2: tuple[AwsProvider, Stubber],
) -> None:
    provider, stub = ec2
    request = NodeRequest(
        "web-1",
        Image(id="ami-1", name="noble", distro="ubuntu", version="24.04"),
        Flavor(id="t3.small", name="t3.small", vcpus=2, ram_mib=2048),
        None,
        "interlock-web-1",
        {"interlock:node": "web-1"},
        token="web-1-s-wf-1",
    )
    sent = {
        "ImageId": "ami-1",
        "InstanceType": "t3.small",
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": "interlock-web-1",
        "ClientToken": "web-1-s-wf-1",  # tried again, EC2 answers with the first run
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": "interlock:node", "Value": "web-1"}]}
        ],
    }
    stub.add_response("run_instances", {"Instances": [instance("i-1", "pending")]}, sent)
    assert provider.create_node(request) == ServerInfo("i-1", "pending", None, "10.0.0.5")
    stub.add_response(
        "run_instances",
        {"Instances": [instance("i-1", "running", "203.0.113.9")]},
        {k: v for k, v in sent.items() if k != "ClientToken"},
    )
    got = provider.create_node(replace(request, token=""))  # no token: none sent
    assert (got.state, got.public_ip) == ("running", "203.0.113.9")


def test_a_site_registers_nothing_and_sends_the_key_with_run_instances_by_default() -> None:
    site = AwsSite(provider="aws", region="us-east-1", endpoint="http://127.0.0.1:9")
    provider = AwsProvider("s", site)
    public = "ssh-ed25519 AAAA interlock:web-1"
    request = NodeRequest(
        "web-1",
        Image(id="ami-1", name="noble", distro="ubuntu", version="24.04"),
        Flavor(id="t3.small", name="t3.small", vcpus=2, ram_mib=2048),
        None,
        None,
        public_key=public,
    )
    sent = {
        "ImageId": "ami-1",
        "InstanceType": "t3.small",
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": f"#cloud-config\nssh_authorized_keys:\n- {public}\n",
    }
    with Stubber(provider.ec2) as stub:  # any call not stubbed fails
        assert provider.register_key("interlock-web-1", public) is None
        stub.add_response("run_instances", {"Instances": [instance("i-1", "pending")]}, sent)
        assert provider.create_node(request).server_id == "i-1"
        stub.assert_no_pending_responses()
    assert yaml.safe_load(cloud_config(public)) == {"ssh_authorized_keys": [public]}


def test_describe_nodes_is_one_call_and_an_unknown_id_falls_back_to_a_filter(
    ec2: tuple[AwsProvider, Stubber],
) -> None:
    provider, stub = ec2
    ids = ["i-1", "i-2", "i-3"]
    stub.add_response(
        "describe_instances",
        reservations(
            instance("i-1", "running", "203.0.113.9"),
            instance("i-2", "pending"),
            instance("i-3", "terminated"),
        ),
        {"InstanceIds": ids},
    )
    got = provider.describe_nodes(ids)
    assert got == {
        "i-1": ServerInfo("i-1", "running", "203.0.113.9", "10.0.0.5"),
        "i-2": ServerInfo("i-2", "pending", None, "10.0.0.5"),
        "i-3": ServerInfo("i-3", "gone", None, "10.0.0.5"),
    }
    # An answer in pages is read to its last (a node on a page not read would look gone).
    stub.add_response(
        "describe_instances",
        {**reservations(instance("i-1", "running", "203.0.113.9")), "NextToken": "r-1"},
        {"InstanceIds": ids},
    )
    stub.add_response(
        "describe_instances",
        reservations(instance("i-2", "pending"), instance("i-3", "running")),
        {"InstanceIds": ids, "NextToken": "r-1"},
    )
    assert {i: s.state for i, s in provider.describe_nodes(ids).items()} == {
        "i-1": "running",
        "i-2": "pending",
        "i-3": "running",
    }
    # One id EC2 does not know fails the call for all: the filter leaves it out instead.
    stub.add_client_error("describe_instances", "InvalidInstanceID.NotFound", "i-9")
    stub.add_response(
        "describe_instances",
        {**reservations(instance("i-1", "running")), "NextToken": "t"},
        {"Filters": [{"Name": "instance-id", "Values": ["i-1", "i-9", "i-2"]}]},
    )
    stub.add_response(
        "describe_instances",
        reservations(instance("i-2", "stopped")),
        {"Filters": [{"Name": "instance-id", "Values": ["i-1", "i-9", "i-2"]}], "NextToken": "t"},
    )
    got = provider.describe_nodes(["i-1", "i-9", "i-2"])
    assert {i: s.state for i, s in got.items()} == {
        "i-1": "running",
        "i-9": "gone",
        "i-2": "stopped",
    }
    # One id unknown: gone without a second call; other errors stay what they were.
    stub.add_client_error("describe_instances", "InvalidInstanceID.NotFound", "i-9")
    assert provider.describe_node("i-9") == ServerInfo("i-9", "gone", None, None)
    stub.add_client_error("describe_instances", "RequestLimitExceeded", "slow", 503)
    with pytest.raises(TransientError):
        provider.describe_nodes(["i-1", "i-2"])


def test_firewalls_are_one_describe_of_the_instances_and_one_of_their_groups(
    ec2: tuple[AwsProvider, Stubber],
) -> None:
    provider, stub = ec2

    def nic(*groups: str) -> dict[str, Any]:
        return {
            "NetworkInterfaces": [
                {
                    "Attachment": {"DeviceIndex": 0},
                    "Groups": [{"GroupId": g, "GroupName": g} for g in groups],
                }
            ]
        }

    stub.add_response(
        "describe_instances",
        reservations(
            instance("i-1", "running", **nic("sg-web", "sg-default")),
            instance("i-2", "running", **nic("sg-web")),
        ),
        {"InstanceIds": ["i-1", "i-2", "i-9"]},
    )
    ssh = {
        "IpProtocol": "tcp",
        "FromPort": 22,
        "ToPort": 22,
        "IpRanges": [{"CidrIp": "198.51.100.7/32"}],
    }
    own = {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-default"}]}
    stub.add_response(
        "describe_security_groups",
        {
            "SecurityGroups": [
                {"GroupId": "sg-default", "IpPermissions": [own]},
                {"GroupId": "sg-web", "IpPermissions": [ssh]},
            ]
        },
        {"GroupIds": ["sg-default", "sg-web"]},  # the union, once
    )
    walls = provider.firewalls(["i-1", "i-2", "i-9"])
    me = [ipaddress.IPv4Network("198.51.100.7/32")]
    assert walls["i-1"].groups == ("sg-web", "sg-default") and walls["i-1"].admits(22, me)
    assert walls["i-2"].groups == ("sg-web",) and walls["i-2"].admits(22, me)
    assert not walls["i-2"].admits(22, [ipaddress.IPv4Network("192.0.2.1/32")])
    assert "i-9" not in walls  # the describe did not show it: left out
    stub.add_client_error("describe_instances", "InvalidInstanceID.NotFound", "i-9")
    with pytest.raises(NotFoundError):
        provider.firewall("i-9")


def test_register_key_replaces_a_key_of_that_name(ec2: tuple[AwsProvider, Stubber]) -> None:
    provider, stub = ec2
    sent = {
        "KeyName": "interlock-web-1",
        "PublicKeyMaterial": b"ssh-ed25519 AAAA x",
        "TagSpecifications": [
            {"ResourceType": "key-pair", "Tags": [{"Key": "interlock:node", "Value": "web-1"}]}
        ],
    }
    tags = {"interlock:node": "web-1"}
    stub.add_response("import_key_pair", {"KeyName": "interlock-web-1"}, sent)
    assert provider.register_key("interlock-web-1", "ssh-ed25519 AAAA x", tags) == "interlock-web-1"
    stub.add_client_error("import_key_pair", "InvalidKeyPair.Duplicate", "exists")
    stub.add_response("delete_key_pair", {}, {"KeyName": "interlock-web-1"})
    stub.add_response("import_key_pair", {"KeyName": "interlock-web-1"}, sent)
    assert provider.register_key("interlock-web-1", "ssh-ed25519 AAAA x", tags) == "interlock-web-1"
    stub.add_client_error("import_key_pair", "InvalidKey.Format", "bad")
    with pytest.raises(InvalidRequestError, match=r"InvalidKey\.Format"):
        provider.register_key("interlock-web-1", "ssh-ed25519 AAAA x", tags)
