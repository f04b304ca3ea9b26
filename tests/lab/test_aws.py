"""The lab's EC2, driven with boto3 as a user would, checked over real SSH."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest
from botocore.exceptions import ClientError

from tests.lab.conftest import Lab, host_admitted, ssh_ready, ssh_run, wait_for

UBUNTU_2404 = "ami-0e2c8caa4b6378d8c"


@pytest.fixture
def key(lab: Lab) -> Iterator[tuple[str, asyncssh.SSHKey, str]]:
    """A key pair, and a group admitting the host (the lab's default group does not)."""
    ec2 = lab.ec2()
    with host_admitted(ec2) as group:
        pair = ec2.create_key_pair(KeyName="test-key", KeyType="ed25519")
        yield "test-key", asyncssh.import_private_key(pair["KeyMaterial"]), group
        ec2.delete_key_pair(KeyName="test-key")


def launch(
    ec2: Any, image: str, key: tuple[str, asyncssh.SSHKey, str], count: int = 1
) -> list[dict[str, Any]]:
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=image,
            InstanceType="t3.micro",
            MinCount=count,
            MaxCount=count,
            KeyName=key[0],
            SecurityGroupIds=[key[2]],
        )["Instances"]
    ]
    described = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return [i for r in described for i in r["Instances"]]


def test_boto3_user_journey(lab: Lab, key: tuple[str, asyncssh.SSHKey, str]) -> None:
    ec2 = lab.ec2()
    (inst,) = launch(ec2, UBUNTU_2404, key)
    public = inst["PublicIpAddress"]
    assert ipaddress.IPv4Address(public) in lab.pool("aws")
    assert ipaddress.IPv4Address(inst["PrivateIpAddress"]) in ipaddress.IPv4Network("172.31.0.0/16")
    ssh_ready(public)

    done = ssh_run(public, "ubuntu", key[1], "id -un; hostname; ip -4 -br addr show eth0")
    assert done.exit_status == 0
    user, hostname, eth0 = str(done.stdout).splitlines()
    assert user == "ubuntu"
    assert hostname == "ip-" + inst["PrivateIpAddress"].replace(".", "-")
    assert inst["PrivateIpAddress"] in eth0

    root = ssh_run(public, "root", key[1], "id")
    assert root.exit_status == 142
    assert 'Please login as the user "ubuntu" rather than the user "root".' in str(root.stdout)

    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    assert all(n["id"] != inst["InstanceId"] for n in lab.client.nodes())
    with pytest.raises(OSError):
        asyncio.run(asyncio.open_connection(public, 22))
    ledger = lab.client.ledger("aws")
    entry = next(e for e in ledger if e["rid"] == inst["InstanceId"])
    assert entry["kind"] == "server" and entry["released"] is not None


def test_elastic_ip_reassociation_is_live(lab: Lab, key: tuple[str, asyncssh.SSHKey, str]) -> None:
    ec2 = lab.ec2()
    a, b = launch(ec2, UBUNTU_2404, key, count=2)
    eip = ec2.allocate_address(Domain="vpc")
    try:
        ec2.associate_address(InstanceId=a["InstanceId"], AllocationId=eip["AllocationId"])
        ssh_ready(eip["PublicIp"])
        assert str(ssh_run(eip["PublicIp"], "ubuntu", key[1], "hostname").stdout).strip() == (
            "ip-" + a["PrivateIpAddress"].replace(".", "-")
        )
        ec2.associate_address(
            InstanceId=b["InstanceId"], AllocationId=eip["AllocationId"], AllowReassociation=True
        )
        assert str(ssh_run(eip["PublicIp"], "ubuntu", key[1], "hostname").stdout).strip() == (
            "ip-" + b["PrivateIpAddress"].replace(".", "-")
        )
        # The old instance got a fresh public address of its own, as on AWS.
        now = {
            i["InstanceId"]: i.get("PublicIpAddress")
            for r in ec2.describe_instances(InstanceIds=[a["InstanceId"], b["InstanceId"]])[
                "Reservations"
            ]
            for i in r["Instances"]
        }
        assert now[b["InstanceId"]] == eip["PublicIp"]
        assert now[a["InstanceId"]] not in (None, eip["PublicIp"])
        ssh_ready(now[a["InstanceId"]])
    finally:
        ec2.disassociate_address(PublicIp=eip["PublicIp"])
        ec2.release_address(AllocationId=eip["AllocationId"])
        ec2.terminate_instances(InstanceIds=[a["InstanceId"], b["InstanceId"]])
    with pytest.raises(OSError):
        asyncio.run(asyncio.open_connection(eip["PublicIp"], 22))
    fixtures = ("keypair", "security-group", "security-group-rule")  # the key fixture's
    assert not [e for e in lab.client.ledger("aws", outstanding=True) if e["kind"] not in fixtures]


def test_stop_keeps_the_disk_and_start_boots_it_again(
    lab: Lab, key: tuple[str, asyncssh.SSHKey, str]
) -> None:
    ec2 = lab.ec2()
    (inst,) = launch(ec2, UBUNTU_2404, key)
    iid = inst["InstanceId"]
    try:
        ssh_ready(inst["PublicIpAddress"])
        ssh_run(inst["PublicIpAddress"], "ubuntu", key[1], "echo kept > ~/marker")
        ec2.stop_instances(InstanceIds=[iid])
        assert all(n["id"] != iid for n in lab.client.nodes())
        ec2.start_instances(InstanceIds=[iid])
        public = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
            "PublicIpAddress"
        ]
        ssh_ready(public)
        assert str(ssh_run(public, "ubuntu", key[1], "cat ~/marker").stdout).strip() == "kept"
    finally:
        ec2.terminate_instances(InstanceIds=[iid])


def test_unknown_ami_and_key_fail_like_aws(lab: Lab) -> None:
    ec2 = lab.ec2()
    with pytest.raises(ClientError) as e:
        ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)
    assert e.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
    with pytest.raises(ClientError) as e:
        ec2.run_instances(ImageId=UBUNTU_2404, MinCount=1, MaxCount=1, KeyName="no-such-key")
    assert e.value.response["Error"]["Code"] == "InvalidKeyPair.NotFound"
    assert not lab.client.ledger("aws", outstanding=True)


def test_a_run_sent_again_with_its_client_token_launches_once(lab: Lab) -> None:
    """A client that lost RunInstances' answer sends it again with the same ClientToken;
    EC2 answers with the first run's instance and launches nothing more."""
    ec2 = lab.ec2()
    servers_before = {e["rid"] for e in lab.client.ledger("aws") if e["kind"] == "server"}
    run = {"ImageId": UBUNTU_2404, "InstanceType": "t3.micro", "MinCount": 1, "MaxCount": 1}
    first = ec2.run_instances(**run, ClientToken="retry-me")["Instances"][0]["InstanceId"]
    again = ec2.run_instances(**run, ClientToken="retry-me")["Instances"][0]["InstanceId"]
    other = ec2.run_instances(**run, ClientToken="another")["Instances"][0]["InstanceId"]
    try:
        assert again == first
        assert other != first
        servers = {e["rid"] for e in lab.client.ledger("aws") if e["kind"] == "server"}
        assert servers - servers_before == {first, other}
        mine = {n["id"] for n in lab.client.nodes()} & {first, other}
        assert mine == {first, other}
    finally:
        ec2.terminate_instances(InstanceIds=[first, other])
    assert not {first, other} & {e["rid"] for e in lab.client.ledger("aws", outstanding=True)}


def test_key_pairs_are_in_the_ledger(lab: Lab) -> None:
    ec2 = lab.ec2()
    ec2.create_key_pair(KeyName="ledgered")
    assert any(e["rid"] == "ledgered" for e in lab.client.ledger("aws", outstanding=True))
    ec2.delete_key_pair(KeyName="ledgered")
    assert not any(e["rid"] == "ledgered" for e in lab.client.ledger("aws", outstanding=True))


def test_private_addresses_connect_nodes_on_the_vpc(
    lab: Lab, key: tuple[str, asyncssh.SSHKey, str]
) -> None:
    ec2 = lab.ec2()
    a, b = launch(ec2, UBUNTU_2404, key, count=2)
    try:
        ssh_ready(a["PublicIpAddress"])
        wait_for("node b", lambda: any(n["id"] == b["InstanceId"] for n in lab.client.nodes()))
        probe = f"exec 3<>/dev/tcp/{b['PrivateIpAddress']}/22 && head -c 7 <&3"
        probe = f"timeout 5 bash -c '{probe}'"
        # Their group admits the host only: node to node, the VPC's firewall holds too.
        done = ssh_run(a["PublicIpAddress"], "ubuntu", key[1], probe)
        assert done.exit_status != 0 and str(done.stdout) == ""
        # A rule admitting the group's own members opens it, at once.
        pair = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                "UserIdGroupPairs": [{"GroupId": key[2]}]}  # fmt: skip
        ec2.authorize_security_group_ingress(GroupId=key[2], IpPermissions=[pair])
        done = ssh_run(a["PublicIpAddress"], "ubuntu", key[1], probe)
        assert str(done.stdout) == "SSH-2.0"
    finally:
        ec2.terminate_instances(InstanceIds=[a["InstanceId"], b["InstanceId"]])
