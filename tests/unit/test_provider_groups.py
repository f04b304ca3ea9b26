"""A new node gets the deployment's group at its creation (EC2: RunInstances'
SecurityGroupIds, the VPC's default group kept first), decided before it exists from what
a node gets by default (`default_firewall`); `make_group` makes (or reuses) the group, and
`open_ports` is that and an attach. botocore's Stubber checks every call's shape."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.stub import Stubber

from interlock.config import AwsSite, MetalSite
from interlock.firewall import Firewall
from interlock.model import Flavor, Image, Network
from interlock.providers.aws import AwsProvider
from interlock.providers.base import InvalidRequestError, NodeRequest, ServerInfo
from interlock.providers.metal import MetalProvider

if TYPE_CHECKING:
    from interlock.state import Store

HOME = [ipaddress.IPv4Network("198.51.100.7/32")]
TAGS = {"interlock:owner": "interlock", "interlock:deployment": "web"}
SUBNET = Network(id="subnet-1", name="subnet-1 (default)", role="public", evidence="")
OWN = {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-default"}]}
SSH = {
    "IpProtocol": "tcp",
    "FromPort": 22,
    "ToPort": 22,
    "IpRanges": [{"CidrIp": "198.51.100.7/32", "Description": "interlock"}],
}
BY_NAME = {
    "Filters": [
        {"Name": "vpc-id", "Values": ["vpc-1"]},
        {"Name": "group-name", "Values": ["interlock-web"]},
    ]
}
DEFAULT = {
    "Filters": [
        {"Name": "vpc-id", "Values": ["vpc-1"]},
        {"Name": "group-name", "Values": ["default"]},
    ]
}


@pytest.fixture
def ec2() -> Iterator[tuple[AwsProvider, Stubber]]:
    provider = AwsProvider(
        "s", AwsSite(provider="aws", region="us-east-1", endpoint="http://127.0.0.1:9")
    )
    with Stubber(provider.ec2) as stub:
        yield provider, stub
        stub.assert_no_pending_responses()


def default_group(*permissions: dict[str, Any]) -> dict[str, Any]:
    return {
        "SecurityGroups": [
            {
                "GroupId": "sg-default",
                "GroupName": "default",
                "VpcId": "vpc-1",
                "IpPermissions": list(permissions),
            }
        ]
    }


def request(groups: tuple[str, ...] = ()) -> NodeRequest:
    return NodeRequest(
        "web-1",
        Image(id="ami-1", name="noble", distro="ubuntu", version="24.04"),
        Flavor(id="t3.small", name="t3.small", vcpus=2, ram_mib=2048),
        SUBNET,
        "interlock-web-1",
        {"interlock:node": "web-1"},
        groups=groups,
    )


def run(**more: Any) -> dict[str, Any]:
    """RunInstances' parameters for `request()`, and `more`."""
    return {
        "ImageId": "ami-1",
        "InstanceType": "t3.small",
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": "interlock-web-1",
        "SubnetId": "subnet-1",
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": "interlock:node", "Value": "web-1"}]}
        ],
        **more,
    }


PENDING = {"Instances": [{"InstanceId": "i-1", "State": {"Name": "pending", "Code": 0}}]}


def test_run_instances_carries_the_default_group_and_the_requested_ones(
    ec2: tuple[AwsProvider, Stubber],
) -> None:
    provider, stub = ec2
    # No groups: nothing sent, nothing looked up (the VPC's default group, as before).
    stub.add_response("run_instances", PENDING, run())
    assert provider.create_node(request()) == ServerInfo("i-1", "pending", None, None)
    # Groups: the subnet's VPC and its default group looked up once, kept first.
    stub.add_response(
        "describe_subnets",
        {"Subnets": [{"SubnetId": "subnet-1", "VpcId": "vpc-1"}]},
        {"SubnetIds": ["subnet-1"]},
    )
    stub.add_response("describe_security_groups", default_group(OWN), DEFAULT)
    stub.add_response("run_instances", PENDING, run(SecurityGroupIds=["sg-default", "sg-web"]))
    provider.create_node(request(("sg-web",)))
    stub.add_response("run_instances", PENDING, run(SecurityGroupIds=["sg-default", "sg-web"]))
    provider.create_node(request(("sg-web",)))  # the next node: no look-up again
    # An operator's group by name: its id, in the node's VPC; the default given: once.
    stub.add_response(
        "describe_security_groups", {"SecurityGroups": [{"GroupId": "sg-ops"}]}, BY_NAME
    )
    stub.add_response("run_instances", PENDING, run(SecurityGroupIds=["sg-default", "sg-ops"]))
    provider.create_node(request(("interlock-web", "sg-default")))
    stub.add_response("describe_security_groups", {"SecurityGroups": []}, BY_NAME)
    with pytest.raises(InvalidRequestError, match="interlock-web"):
        provider.create_node(request(("interlock-web",)))


DEFAULT_VPC = {"Filters": [{"Name": "isDefault", "Values": ["true"]}]}


def test_no_subnet_is_the_default_vpc(ec2: tuple[AwsProvider, Stubber]) -> None:
    provider, stub = ec2
    stub.add_response("describe_vpcs", {"Vpcs": [{"VpcId": "vpc-1"}]}, DEFAULT_VPC)
    stub.add_response("describe_security_groups", default_group(OWN), DEFAULT)
    sent = run(SecurityGroupIds=["sg-default", "sg-web"])
    del sent["SubnetId"]
    stub.add_response("run_instances", PENDING, sent)
    provider.create_node(replace(request(("sg-web",)), network=None))


def test_no_default_vpc_and_no_subnet_is_refused(ec2: tuple[AwsProvider, Stubber]) -> None:
    provider, stub = ec2
    stub.add_response("describe_vpcs", {"Vpcs": []}, DEFAULT_VPC)
    with pytest.raises(InvalidRequestError, match="no default VPC"):
        provider.default_firewall(None)


def test_default_firewall_is_the_default_groups_rules_read_each_time(
    ec2: tuple[AwsProvider, Stubber],
) -> None:
    provider, stub = ec2
    # metadata's subnets tell their VPCs: no DescribeSubnets later.
    stub.add_response("describe_instance_types", {"InstanceTypes": []})
    stub.add_response("describe_images", {"Images": []})
    stub.add_response("describe_subnets", {"Subnets": [{"SubnetId": "subnet-1", "VpcId": "vpc-1"}]})
    provider.metadata()
    stub.add_response("describe_security_groups", default_group(OWN), DEFAULT)
    wall = provider.default_firewall(SUBNET)
    assert wall.groups == ("sg-default",) and not wall.admits(22, HOME)  # members only
    # Rules change: read again (one call), never cached.
    stub.add_response("describe_security_groups", default_group(OWN, SSH), DEFAULT)
    assert provider.default_firewall(SUBNET).admits(22, HOME)
    # The group's id is known now: a request carrying groups looks nothing up.
    stub.add_response("run_instances", PENDING, run(SecurityGroupIds=["sg-default", "sg-web"]))
    provider.create_node(request(("sg-web",)))


def made(stub: Stubber, found: bool) -> None:
    """The calls of making (found: reusing) group interlock-web in vpc-1."""
    listed = [{"GroupId": "sg-web", "GroupName": "interlock-web"}] if found else []
    stub.add_response("describe_security_groups", {"SecurityGroups": listed}, BY_NAME)
    if not found:
        stub.add_response(
            "create_security_group",
            {"GroupId": "sg-web"},
            {
                "GroupName": "interlock-web",
                "Description": "interlock: the operator's ports, all within the deployment",
                "VpcId": "vpc-1",
                "TagSpecifications": [
                    {
                        "ResourceType": "security-group",
                        "Tags": [{"Key": k, "Value": v} for k, v in TAGS.items()],
                    }
                ],
            },
        )
    stub.add_response(
        "authorize_security_group_ingress", {}, {"GroupId": "sg-web", "IpPermissions": [SSH]}
    )
    stub.add_response(
        "authorize_security_group_ingress",
        {},
        {
            "GroupId": "sg-web",
            "IpPermissions": [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-web"}]}],
        },
    )


def test_make_group_makes_or_reuses_by_name_and_attaches_nothing(
    ec2: tuple[AwsProvider, Stubber],
) -> None:
    provider, stub = ec2
    stub.add_response(
        "describe_subnets",
        {"Subnets": [{"SubnetId": "subnet-1", "VpcId": "vpc-1"}]},
        {"SubnetIds": ["subnet-1"]},
    )
    made(stub, found=False)
    assert provider.make_group("interlock-web", (22,), HOME, TAGS, SUBNET) == "sg-web"
    # Made and authorized by this process: nothing asked again.
    assert provider.make_group("interlock-web", (22,), HOME, TAGS, SUBNET) == "sg-web"
    # Another process (or a run before) made it: found by name; rules there already are fine.
    other = AwsProvider(
        "s", AwsSite(provider="aws", region="us-east-1", endpoint="http://127.0.0.1:9")
    )
    other._vpcs["subnet-1"] = "vpc-1"
    with Stubber(other.ec2) as stub2:
        stub2.add_response(
            "describe_security_groups", {"SecurityGroups": [{"GroupId": "sg-web"}]}, BY_NAME
        )
        stub2.add_client_error("authorize_security_group_ingress", "InvalidPermission.Duplicate")
        stub2.add_client_error("authorize_security_group_ingress", "InvalidPermission.Duplicate")
        assert other.make_group("interlock-web", (22,), HOME, TAGS, SUBNET) == "sg-web"
        stub2.assert_no_pending_responses()
    # Deleted by this process: made again when asked for next.
    stub.add_response("describe_instances", {"Reservations": []}, {"Filters": [
        {"Name": "instance.group-id", "Values": ["sg-web"]},
        {"Name": "instance-state-name",
         "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]},
    ]})  # fmt: skip
    stub.add_response("delete_security_group", {}, {"GroupId": "sg-web"})
    provider.delete_group("sg-web")
    made(stub, found=True)
    assert provider.make_group("interlock-web", (22,), HOME, TAGS, SUBNET) == "sg-web"


def instance(server_id: str, *groups: str) -> dict[str, Any]:
    return {
        "Reservations": [
            {
                "Instances": [
                    {
                        "InstanceId": server_id,
                        "VpcId": "vpc-1",
                        "NetworkInterfaces": [
                            {
                                "Attachment": {"DeviceIndex": 0},
                                "Groups": [{"GroupId": g} for g in groups],
                            }
                        ],
                    }
                ]
            }
        ]
    }


def test_open_ports_is_make_group_and_an_attach_as_before(
    ec2: tuple[AwsProvider, Stubber],
) -> None:
    provider, stub = ec2
    stub.add_response("describe_instances", instance("i-1", "sg-default"), {"InstanceIds": ["i-1"]})
    made(stub, found=False)
    stub.add_response(
        "modify_instance_attribute", {}, {"InstanceId": "i-1", "Groups": ["sg-default", "sg-web"]}
    )
    assert provider.open_ports("i-1", "interlock-web", (22,), HOME, TAGS) == "sg-web"
    # The next node: its describe and the attach; the group is made already.
    stub.add_response("describe_instances", instance("i-2", "sg-default"), {"InstanceIds": ["i-2"]})
    stub.add_response(
        "modify_instance_attribute", {}, {"InstanceId": "i-2", "Groups": ["sg-default", "sg-web"]}
    )
    assert provider.open_ports("i-2", "interlock-web", (22,), HOME, TAGS) == "sg-web"
    # make_group for the same VPC knows it too (the node's VPC is the subnet's).
    provider._vpcs["subnet-1"] = "vpc-1"
    assert provider.make_group("interlock-web", (22,), HOME, TAGS, SUBNET) == "sg-web"
    # Held already: no attach. Deleted meanwhile by someone else: made again, attached.
    stub.add_response("describe_instances", instance("i-3", "sg-web"), {"InstanceIds": ["i-3"]})
    assert provider.open_ports("i-3", "interlock-web", (22,), HOME, TAGS) == "sg-web"
    stub.add_response("describe_instances", instance("i-4"), {"InstanceIds": ["i-4"]})
    stub.add_client_error("modify_instance_attribute", "InvalidGroup.NotFound")
    made(stub, found=False)
    stub.add_response("modify_instance_attribute", {}, {"InstanceId": "i-4", "Groups": ["sg-web"]})
    assert provider.open_ports("i-4", "interlock-web", (22,), HOME, TAGS) == "sg-web"


def test_api_host_is_the_endpoints(ec2: tuple[AwsProvider, Stubber]) -> None:
    provider, _ = ec2
    assert provider.api_host == "127.0.0.1"
    aws = AwsProvider("s", AwsSite(provider="aws", region="eu-west-1"))
    assert aws.api_host == "ec2.eu-west-1.amazonaws.com"


def test_a_metal_site_filters_nothing_by_default() -> None:
    site = MetalSite.model_construct(  # unchecked: neither file is read here
        provider="metal",
        endpoint="https://bmc.example:8443/redfish/v1",
        username="u",
        password_file=Path("password"),
        pool_key=Path("pool"),
        machines=[],
    )
    metal = MetalProvider("m", site, cast("Store", None))
    assert metal.default_firewall(None) == Firewall(enforced=False)
    assert metal.api_host == "bmc.example"
    with pytest.raises(InvalidRequestError, match="no security groups"):
        metal.make_group("interlock-web", (22,), HOME, TAGS, None)
