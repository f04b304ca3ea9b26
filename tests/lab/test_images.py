"""Each first-boot behaviour an image can have, checked on a real node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.lab.conftest import Lab, ssh_ready, ssh_run, wait_for

IMAGES = {
    "ubuntu": "ami-00000000000000001",
    "debian": "ami-00000000000000002",
    "centos": "ami-00000000000000003",
    "cloud-user": "ami-00000000000000004",
    "fedora": "ami-00000000000000005",
    "dhc-user": "ami-00000000000000006",
    "half-done": "ami-00000000000000007",
    "root": "ami-00000000000000008",
    "admin": "ami-00000000000000009",
}


@pytest.fixture(scope="module")
def quirks(lab: Lab) -> Iterator[tuple[Any, asyncssh.SSHKey]]:
    ec2 = lab.ec2("quirks")
    pair = ec2.create_key_pair(KeyName="quirks", KeyType="ed25519")
    yield ec2, asyncssh.import_private_key(pair["KeyMaterial"])
    ec2.delete_key_pair(KeyName="quirks")


@pytest.fixture
def boot(quirks: tuple[Any, asyncssh.SSHKey]) -> Iterator[Any]:
    ec2, _ = quirks
    launched: list[str] = []

    def run(image: str) -> dict[str, Any]:
        inst = ec2.run_instances(
            ImageId=IMAGES[image], InstanceType="t3.micro", MinCount=1, MaxCount=1, KeyName="quirks"
        )["Instances"][0]
        launched.append(inst["InstanceId"])
        return dict(
            ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0][
                "Instances"
            ][0]
        )

    yield run
    if launched:
        ec2.terminate_instances(InstanceIds=launched)


def password(lab: Lab) -> str:
    return Path(lab.state["sites"]["quirks"]["password_file"]).read_text().strip()


@pytest.mark.parametrize("user", ["ubuntu", "debian", "centos", "cloud-user", "admin"])
def test_default_user_gets_the_key_and_passwordless_sudo(
    lab: Lab, quirks: tuple[Any, asyncssh.SSHKey], boot: Any, user: str
) -> None:
    inst = boot(user)
    ssh_ready(inst["PublicIpAddress"])
    done = ssh_run(inst["PublicIpAddress"], user, quirks[1], "id -un && sudo -n id -un")
    assert done.exit_status == 0, done.stderr
    assert str(done.stdout).split() == [user, "root"]


def test_root_login_is_redirected_with_exit_142(
    quirks: tuple[Any, asyncssh.SSHKey], boot: Any
) -> None:
    inst = boot("centos")
    ssh_ready(inst["PublicIpAddress"])
    done = ssh_run(inst["PublicIpAddress"], "root", quirks[1], "id")
    assert done.exit_status == 142
    assert 'Please login as the user "centos" rather than the user "root".' in str(done.stdout)


def test_root_image_logs_in_as_root(quirks: tuple[Any, asyncssh.SSHKey], boot: Any) -> None:
    inst = boot("root")
    ssh_ready(inst["PublicIpAddress"])
    done = ssh_run(inst["PublicIpAddress"], "root", quirks[1], "id -u")
    assert (done.exit_status, str(done.stdout).strip()) == (0, "0")


def test_root_login_key_image_takes_the_instance_key_for_root(
    quirks: tuple[Any, asyncssh.SSHKey], boot: Any
) -> None:
    inst = boot("admin")
    ssh_ready(inst["PublicIpAddress"])
    assert ssh_run(inst["PublicIpAddress"], "root", quirks[1], "id -u").exit_status == 0


def test_password_authentication_on_and_off(
    lab: Lab, quirks: tuple[Any, asyncssh.SSHKey], boot: Any
) -> None:
    on, off = boot("centos"), boot("debian")
    ssh_ready(on["PublicIpAddress"])
    ssh_ready(off["PublicIpAddress"])
    secret = password(lab)
    done = ssh_run(on["PublicIpAddress"], "centos", None, "id -un", password=secret)
    assert str(done.stdout).strip() == "centos"
    with pytest.raises(asyncssh.PermissionDenied):
        ssh_run(off["PublicIpAddress"], "debian", None, "id -un", password=secret)
    with pytest.raises(asyncssh.PermissionDenied):
        ssh_run(on["PublicIpAddress"], "centos", None, "id -un", password="wrong-" + secret)


def test_boot_delay_keeps_sshd_silent_until_boot(
    quirks: tuple[Any, asyncssh.SSHKey], boot: Any
) -> None:
    inst = boot("fedora")  # boot_delay: 20 s
    with pytest.raises((OSError, asyncssh.Error)):
        ssh_run(inst["PublicIpAddress"], "fedora", quirks[1], "true", timeout=2)
    ssh_ready(inst["PublicIpAddress"], timeout=60)
    assert ssh_run(inst["PublicIpAddress"], "fedora", quirks[1], "true").exit_status == 0


def test_late_key_answers_before_the_key_is_installed(
    quirks: tuple[Any, asyncssh.SSHKey], boot: Any
) -> None:
    inst = boot("dhc-user")  # key_delay: 3 s
    ssh_ready(inst["PublicIpAddress"])
    with pytest.raises(asyncssh.PermissionDenied):
        ssh_run(inst["PublicIpAddress"], "dhc-user", quirks[1], "true")

    def logged_in() -> bool:
        try:
            return ssh_run(inst["PublicIpAddress"], "dhc-user", quirks[1], "true").exit_status == 0
        except asyncssh.PermissionDenied:
            return False

    wait_for("the late key", logged_in)


def test_boot_finished_written_on_complete_first_boot(
    quirks: tuple[Any, asyncssh.SSHKey], boot: Any
) -> None:
    inst = boot("ubuntu")
    ssh_ready(inst["PublicIpAddress"])

    def finished() -> bool:
        probe = "test -s /var/lib/cloud/instance/boot-finished"
        return ssh_run(inst["PublicIpAddress"], "ubuntu", quirks[1], probe).exit_status == 0

    wait_for("boot-finished", finished)


def test_incomplete_post_provisioning_never_finishes(
    lab: Lab, quirks: tuple[Any, asyncssh.SSHKey], boot: Any
) -> None:
    inst = boot("half-done")
    ssh_ready(inst["PublicIpAddress"])
    node = lab.node(inst["InstanceId"])
    # The first-boot script has run to its end (its log is closed) and wrote nothing.
    script = Path(node["dir"]) / "upper/var/lib/interlock-lab/firstboot"
    assert "boot-finished" not in script.read_text()
    done = ssh_run(
        inst["PublicIpAddress"],
        "ubuntu",
        quirks[1],
        "test -e /var/lib/cloud/instance/boot-finished; echo $?; "
        "sudo -n /usr/sbin/sshd -T 2>/dev/null | grep -i '^passwordauthentication'",
    )
    assert str(done.stdout).split() == ["1", "passwordauthentication", "yes"]
