"""The lab's Compute Engine: the real google-cloud-compute SDK against it, interlock's gce
provider through the eight steps and the interop suite, and Google's guest environment on
the nodes, checked over real SSH. A lab of its own (the gce sites only), torn down after."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from interlock.model import STEPS
from interlock_lab.sitefile import builtin_sites, load_site_file
from tests.lab.conftest import (
    HERE,
    Cli,
    Lab,
    answers_ssh,
    lab_cli,
    outstanding,
    running_lab,
    ssh_ready,
    ssh_run,
)
from tests.lab.test_allocate import password_refused

NAT = "External NAT"


@pytest.fixture(scope="module")
def gce_lab() -> Iterator[Lab]:
    sites = [builtin_sites()["gce"], builtin_sites()["gce-oslogin"], HERE / "gce-custom.yaml"]
    with running_lab("gce", sites) as client:
        yield Lab(client)


@pytest.fixture
def gce_cli(gce_lab: Lab, tmp_path: Any) -> Iterator[Cli]:
    with lab_cli(gce_lab.state, tmp_path / "home") as c:
        yield c


class Compute:
    """The SDK's clients for one lab site, as a user of the lab would make them."""

    def __init__(self, lab: Lab, site: str) -> None:
        info = lab.state["sites"][site]
        self.project, self.zone = info["project"], info["zone"]
        self.region = self.zone.rsplit("-", 1)[0]
        kw: Any = {
            "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
            "client_options": ClientOptions(api_endpoint=info["endpoint"]),
        }
        self.instances = compute_v1.InstancesClient(**kw)
        self.addresses = compute_v1.AddressesClient(**kw)
        self.zones = compute_v1.ZonesClient(**kw)
        self.images = compute_v1.ImagesClient(**kw)
        self.zone_ops = compute_v1.ZoneOperationsClient(**kw)
        self.region_ops = compute_v1.RegionOperationsClient(**kw)

    def done(self, op: compute_v1.Operation) -> compute_v1.Operation:
        """Wait for a zonal or regional operation (operations.wait, again until DONE)."""
        deadline = time.monotonic() + 120
        while op.status != compute_v1.Operation.Status.DONE:
            assert time.monotonic() < deadline, f"operation {op.name} not done"
            if op.zone:
                op = self.zone_ops.wait(project=self.project, zone=self.zone, operation=op.name)
            else:
                op = self.region_ops.wait(
                    project=self.project, region=self.region, operation=op.name
                )
        return op

    def ok(self, op: compute_v1.Operation) -> None:
        op = self.done(op)
        assert not op.error.errors, op.error

    def get(self, name: str) -> compute_v1.Instance:
        return self.instances.get(project=self.project, zone=self.zone, instance=name)

    def set_metadata(self, name: str, items: dict[str, str]) -> None:
        current = self.get(name).metadata.fingerprint
        metadata = compute_v1.Metadata(
            fingerprint=current, items=[compute_v1.Items(key=k, value=v) for k, v in items.items()]
        )
        self.ok(
            self.instances.set_metadata_unary(
                project=self.project, zone=self.zone, instance=name, metadata_resource=metadata
            )
        )


def new_key(comment: str) -> tuple[asyncssh.SSHKey, str]:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    return key, key.export_public_key().decode().strip()


def instance(name: str, image: str, items: dict[str, str], **kw: Any) -> compute_v1.Instance:
    return compute_v1.Instance(
        name=name,
        machine_type=kw.pop("machine_type", "zones/us-central1-a/machineTypes/e2-micro"),
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=image),
            )
        ],
        network_interfaces=[
            compute_v1.NetworkInterface(
                network="global/networks/default",
                access_configs=[compute_v1.AccessConfig(name=NAT, type_="ONE_TO_ONE_NAT")],
            )
        ],
        metadata=compute_v1.Metadata(
            items=[compute_v1.Items(key=k, value=v) for k, v in items.items()]
        ),
        **kw,
    )


def refused(host: str, user: str, key: asyncssh.SSHKey) -> bool:
    try:
        ssh_run(host, user, key, "true")
    except asyncssh.PermissionDenied:
        return True
    return False


def reason(e: gexc.GoogleAPICallError) -> str:
    return str(e.errors[0]["reason"]) if e.errors else ""


# -- interlock on the gce sites ---------------------------------------------------------


def test_up_gives_a_secured_node_and_down_leaves_nothing(gce_lab: Lab, gce_cli: Cli) -> None:
    (node,) = gce_cli.json("up", "web", "--site", "gce", "--os", "ubuntu-24.04")
    assert node["status"] == "ready", node
    assert list(node["timeline"]) == list(STEPS)  # all eight steps, in order
    assert node["login_user"] == "interlock"  # the account the guest agent made from ssh-keys
    assert node["fixups"] == ["root_access: root login with the platform keys enabled"]
    assert ipaddress.IPv4Address(node["public_ip"]) in gce_lab.pool("gce")
    probe = (
        "id -u; systemctl is-system-running --wait; echo --; cat /var/lib/google/google_users;"
        " echo --; getent group google-sudoers; echo --; ls -A /home/interlock/.ssh; echo --;"
        " cat /root/.ssh/authorized_keys"
    )
    shown = gce_cli("ssh", "web-1", "--", probe).stdout.split("--\n")
    assert shown[0].split() == ["0", "running"]
    managed, group, listed, root_keys = (part.strip() for part in shown[1:])
    # Step 8 took ssh-keys out of the metadata: the agent dropped the account's key and sudo.
    assert managed == "" and listed == ""
    assert group.startswith("google-sudoers:x:") and group.endswith(":")  # no members
    platform = (gce_cli.home / "platform_ed25519").read_text()
    platform_pub = asyncssh.import_private_key(platform).export_public_key().decode().split()[1]
    assert root_keys.split()[1] == platform_pub  # only the platform key
    assert password_refused(node["public_ip"])
    gce_cli("down", "web")
    assert outstanding(gce_lab, "gce") == []
    assert not [n for n in gce_lab.client.nodes() if n["site"] == "gce"]


def test_conform_gives_each_sites_ground_truth(gce_lab: Lab, gce_cli: Cli) -> None:
    started = time.monotonic()
    done = gce_cli("conform", "run", "gce", "gce-oslogin", "--baseline", "", "--json", check=False)
    took = time.monotonic() - started
    report = json.loads(done.stdout)
    for site in ("gce", "gce-oslogin"):
        truth = load_site_file(builtin_sites()[site]).ground_truth.capabilities
        got = {c: v["verdict"] for c, v in report["sites"][site]["capabilities"].items()}
        assert got == truth, site
        assert outstanding(gce_lab, site) == []
    assert report["sites"]["gce"]["verdict"] == "pass"
    assert report["sites"]["gce-oslogin"]["verdict"] == "fail"  # a required capability is NO
    assert done.returncode != 0
    # OS Login enforced: a clear NO at the request, naming the constraint, never a hang.
    (check,) = report["sites"]["gce-oslogin"]["capabilities"]["node-request"]["checks"]
    assert "412 conditionNotMet" in check["observed"]
    assert "constraints/compute.requireOsLogin" in check["observed"]
    assert took < 120


def test_custom_network_needs_a_static_address_and_a_firewall_rule(
    gce_lab: Lab, gce_cli: Cli
) -> None:
    (node,) = gce_cli.json("up", "app", "--site", "gce-custom", "--os", "ubuntu-24.04")
    assert node["status"] == "ready", node
    fixups = node["fixups"]
    assert "public_address: floating IP allocated" in fixups
    assert any(f.startswith("firewall: security group allowing SSH") for f in fixups), fixups
    kinds = sorted(e["kind"] for e in outstanding(gce_lab, "gce-custom"))
    assert kinds == ["address", "firewall", "firewall", "server"]

    api = Compute(gce_lab, "gce-custom")
    # The region's INSTANCES quota is one: a second instance fails in its operation.
    extra = instance(
        "extra",
        "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
        {},
        machine_type="zones/us-east1-b/machineTypes/e2-small",
    )
    extra.network_interfaces[0].network = "global/networks/lab-net"
    op = api.instances.insert_unary(project=api.project, zone=api.zone, instance_resource=extra)
    assert (
        op.status == compute_v1.Operation.Status.RUNNING
    )  # asynchronous: the answer comes before the work
    failed = api.done(op)
    assert [e.code for e in failed.error.errors] == ["QUOTA_EXCEEDED"]
    assert failed.http_error_status_code == 403
    with pytest.raises(gexc.NotFound):
        api.get("extra")
    # The site's injected fault: the first zones.list is throttled as Google throttles.
    with pytest.raises(gexc.Forbidden) as e:
        list(api.zones.list(project=api.project))
    assert reason(e.value) == "rateLimitExceeded"
    assert [z.name for z in api.zones.list(project=api.project)] == ["us-east1-b"]

    gce_cli("down", "app")
    assert outstanding(gce_lab, "gce-custom") == []


# -- the SDK directly: guest accounts, metadata, stop/start, static addresses, errors ------


def test_sdk_journey(gce_lab: Lab) -> None:
    api = Compute(gce_lab, "gce")
    alice, alice_pub = new_key("alice@laptop")
    bob, bob_pub = new_key("bob@laptop")
    image = api.images.get_from_family(project="ubuntu-os-cloud", family="ubuntu-2204-lts")
    assert image.name == "ubuntu-2204-jammy-v20250112"
    keys = {"ssh-keys": f"alice:{alice_pub}\nbob:{bob_pub}\nnot a key entry"}
    resource = instance("sdk-1", image.self_link, keys, labels={"team": "red"})
    op = api.instances.insert_unary(project=api.project, zone=api.zone, instance_resource=resource)
    api.ok(op)
    inst = api.get("sdk-1")
    assert inst.status == "RUNNING"
    nic = inst.network_interfaces[0]
    ip = nic.access_configs[0].nat_i_p  # an ephemeral external IP, as Google gives one
    assert ipaddress.IPv4Address(ip) in gce_lab.pool("gce")
    assert ipaddress.IPv4Address(nic.network_i_p) in ipaddress.IPv4Network("10.128.0.0/20")
    ssh_ready(ip)
    # Each ssh-keys account: its key, sudo without a password (the bad line is skipped).
    for user, key in (("alice", alice), ("bob", bob)):
        done = ssh_run(ip, user, key, "sudo -n id -u; id -nG")
        assert str(done.stdout).split("\n")[:2] == ["0", f"{user} google-sudoers"]

    # Listing: a filter on labels, the aggregated list.
    request = compute_v1.ListInstancesRequest(
        project=api.project, zone=api.zone, filter='labels.team = "red"'
    )
    assert [i.name for i in api.instances.list(request=request)] == ["sdk-1"]
    aggregated = dict(api.instances.aggregated_list(project=api.project))
    assert [i.name for i in aggregated[f"zones/{api.zone}"].instances] == ["sdk-1"]

    # bob's entry goes: his key and sudo go with it (the account stays, as Google's default).
    api.set_metadata("sdk-1", {"ssh-keys": f"alice:{alice_pub}"})
    assert refused(ip, "bob", bob)
    assert str(ssh_run(ip, "alice", alice, "id -nG bob").stdout).strip() == "bob"
    # A stale fingerprint fails as on Google.
    stale = compute_v1.Metadata(fingerprint=inst.metadata.fingerprint, items=[])
    with pytest.raises(gexc.PreconditionFailed):
        api.instances.set_metadata_unary(
            project=api.project, zone=api.zone, instance="sdk-1", metadata_resource=stale
        )
    # OS Login on for the instance: the agent ignores ssh-keys, alice is locked out.
    api.set_metadata("sdk-1", {"ssh-keys": f"alice:{alice_pub}", "enable-oslogin": "TRUE"})
    assert refused(ip, "alice", alice)
    api.set_metadata("sdk-1", {"ssh-keys": f"alice:{alice_pub}", "enable-oslogin": "FALSE"})
    ssh_run(ip, "alice", alice, "touch kept-across-stop")

    # Stop and start: the ephemeral IP goes with the stop, the disk stays.
    api.ok(api.instances.stop_unary(project=api.project, zone=api.zone, instance="sdk-1"))
    stopped = api.get("sdk-1")
    assert stopped.status == "TERMINATED"
    assert not stopped.network_interfaces[0].access_configs[0].nat_i_p
    assert not answers_ssh(ip)
    api.ok(api.instances.start_unary(project=api.project, zone=api.zone, instance="sdk-1"))
    ip = api.get("sdk-1").network_interfaces[0].access_configs[0].nat_i_p
    ssh_ready(ip)
    assert str(ssh_run(ip, "alice", alice, "ls kept-across-stop").stdout).strip()

    # A static address swapped in for the ephemeral one.
    address = compute_v1.Address(name="sdk-1-ip")
    api.ok(
        api.addresses.insert_unary(project=api.project, region=api.region, address_resource=address)
    )
    static = api.addresses.get(project=api.project, region=api.region, address="sdk-1-ip")
    assert static.status == "RESERVED"
    api.ok(
        api.instances.delete_access_config_unary(
            project=api.project,
            zone=api.zone,
            instance="sdk-1",
            access_config=NAT,
            network_interface="nic0",
        )
    )
    config = compute_v1.AccessConfig(name=NAT, type_="ONE_TO_ONE_NAT", nat_i_p=static.address)
    api.ok(
        api.instances.add_access_config_unary(
            project=api.project,
            zone=api.zone,
            instance="sdk-1",
            network_interface="nic0",
            access_config_resource=config,
        )
    )
    in_use = api.addresses.get(project=api.project, region=api.region, address="sdk-1-ip")
    assert in_use.status == "IN_USE" and in_use.users[0].endswith("/instances/sdk-1")
    ssh_ready(static.address)
    assert str(ssh_run(static.address, "alice", alice, "hostname").stdout).strip() == "sdk-1"
    with pytest.raises(gexc.BadRequest) as e:
        api.addresses.delete_unary(project=api.project, region=api.region, address="sdk-1-ip")
    assert reason(e.value) == "resourceInUseByAnotherResource"

    # Google's error shapes.
    with pytest.raises(gexc.NotFound) as missing:
        api.get("nope")
    assert reason(missing.value) == "notFound"
    with pytest.raises(gexc.BadRequest) as bad:
        api.instances.insert_unary(
            project=api.project,
            zone=api.zone,
            instance_resource=instance("Bad_Name", image.self_link, {}),
        )
    assert reason(bad.value) == "invalid"
    with pytest.raises(gexc.Conflict) as twice:
        api.instances.insert_unary(project=api.project, zone=api.zone, instance_resource=resource)
    assert reason(twice.value) == "alreadyExists"

    api.ok(api.instances.delete_unary(project=api.project, zone=api.zone, instance="sdk-1"))
    api.ok(api.addresses.delete_unary(project=api.project, region=api.region, address="sdk-1-ip"))
    assert outstanding(gce_lab, "gce") == []
    assert not [n for n in gce_lab.client.nodes() if n["site"] == "gce"]
