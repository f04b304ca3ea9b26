"""Site files: built-ins load; every mistake names the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from interlock.errors import ExitCode
from interlock_lab.client import LabError, resolve_sites
from interlock_lab.sitefile import SiteFileError, builtin_sites, load_site_file


def write(tmp_path: Path, data: object, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def aws(tmp_path: Path) -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(builtin_sites()["aws"].read_text())
    return data


def test_builtin_sites_load_with_real_default_users() -> None:
    sites = {name: load_site_file(path) for name, path in builtin_sites().items()}
    assert {"aws", "metal"} <= set(sites)
    users = {(i.os, i.version): sites["aws"].behaviour(i).login_user for i in sites["aws"].images}
    assert users[("ubuntu", "24.04")] == "ubuntu"
    assert users[("debian", "12")] == "admin"
    assert users[("amzn", "2023")] == "ec2-user"
    assert users[("rhel", "9")] == "ec2-user"
    assert all(sites["metal"].behaviour(i).login_user == "root" for i in sites["metal"].images)


def test_image_settings_override_site_defaults(tmp_path: Path) -> None:
    data = aws(tmp_path)
    data["defaults"] = {"login_user": "cloud-user", "password_auth": True, "boot_delay": 2}
    data["images"] = [
        {"id": "ami-1", "name": "a", "os": "centos", "version": "9"},
        {"id": "ami-2", "name": "b", "os": "centos", "version": "9", "password_auth": False},
    ]
    site = load_site_file(write(tmp_path, data))
    first, second = (site.behaviour(i) for i in site.images)
    assert (first.login_user, first.password_auth, first.boot_delay) == ("cloud-user", True, 2)
    assert (second.login_user, second.password_auth) == ("cloud-user", False)


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"public": {"pool": "10.1.0.0/16"}}, "public.pool", "127.0.0.0/8"),
        ({"kind": "azure"}, "kind", "'aws', 'gce', 'metal' or 'openstack'"),
        ({"networks": [{"name": "n", "cidr": "127.5.0.0/16"}]}, "networks[0].cidr", "overlap"),
        ({"images": [{"id": "x", "name": "x", "os": "ubuntu"}]}, "images[0].version", "required"),
        ({"defaults": {"login_user": "Root User"}}, "defaults.login_user", "pattern"),
        ({"faults": [{"action": "RunInstances", "error": "X", "rate": 2}]}, "faults[0].rate", "1"),
        ({"surprise": 1}, "surprise", "not permitted"),
    ],
)
def test_errors_name_file_field_and_problem(
    tmp_path: Path, change: dict[str, object], field: str, problem: str
) -> None:
    data = aws(tmp_path)
    data.update(change)
    path = write(tmp_path, data)
    with pytest.raises(SiteFileError) as e:
        load_site_file(path)
    message = str(e.value)
    assert message.startswith(str(path))
    assert f"field '{field}'" in message
    assert problem in message
    assert "(line " in message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nkind: [aws\n")
    with pytest.raises(SiteFileError, match=rf"^{path} \(line \d+\): not valid YAML"):
        load_site_file(path)


def test_missing_file_and_wrong_top_level(tmp_path: Path) -> None:
    with pytest.raises(SiteFileError, match="cannot read: no such file"):
        load_site_file(tmp_path / "nope.yaml")
    with pytest.raises(SiteFileError, match="top level must be a mapping"):
        load_site_file(write(tmp_path, "- a\n- b\n"))


def test_metal_machines_must_name_known_images(tmp_path: Path) -> None:
    data = yaml.safe_load(builtin_sites()["metal"].read_text())
    data["machines"][0]["image"] = "windows"
    with pytest.raises(
        SiteFileError, match=r"field 'machines\[0\]\.image': not an image of this site"
    ):
        load_site_file(write(tmp_path, data))


def test_resolve_sites_refuses_unknown_duplicate_and_overlapping(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="unknown lab site 'gcp'") as e:
        resolve_sites(["gcp"], [])
    assert e.value.code == ExitCode.BAD_INPUT
    with pytest.raises(LabError, match="also defined by"):
        resolve_sites(["aws"], [builtin_sites()["aws"]])
    data = aws(tmp_path)
    data["name"] = "aws-two"
    with pytest.raises(LabError, match=r"field 'public\.pool'.*overlaps site 'aws'"):
        resolve_sites(["aws"], [write(tmp_path, data)])
    assert [s.name for _, s in resolve_sites([], [])] == sorted(builtin_sites())


def test_metal_machines_must_fit_their_addresses(tmp_path: Path) -> None:
    data = yaml.safe_load(builtin_sites()["metal"].read_text())
    data["public"]["pool"] = "127.77.0.0/28"
    with pytest.raises(SiteFileError, match=r"field 'public\.pool': 6 machines do not fit"):
        load_site_file(write(tmp_path, data))


def gce(tmp_path: Path) -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(builtin_sites()["gce"].read_text())
    return data


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"region": "us-east1"}, "region", "the region of zone us-central1-a is us-central1"),
        ({"gce": {"zone": "central"}}, "gce.zone", "pattern"),
        ({"gce": {"network": "legacy"}}, "gce.network", "'default' or 'custom'"),
        ({"gce": {"operation_delay": -1}}, "gce.operation_delay", "greater than or equal"),
        ({"networks": [{"name": "vpc", "cidr": "10.1.0.0/20"}]}, "networks[0].name", "default"),
        (
            {"images": [{"id": "u", "name": "u", "os": "ubuntu", "version": "24.04"}]},
            "images[0].properties",
            "project",
        ),
        (
            {
                "images": [
                    {
                        "id": "U-1",
                        "name": "U-1",
                        "os": "ubuntu",
                        "version": "24.04",
                        "properties": {"project": "ubuntu-os-cloud"},
                    }
                ]
            },
            "images[0].id",
            "GCE image name",
        ),
    ],
)
def test_gce_options_are_checked(
    tmp_path: Path, change: dict[str, object], field: str, problem: str
) -> None:
    data = gce(tmp_path)
    data.update(change)
    with pytest.raises(SiteFileError) as e:
        load_site_file(write(tmp_path, data))
    assert f"field '{field}'" in str(e.value) and problem in str(e.value), str(e.value)


def test_gce_options_belong_to_gce_sites(tmp_path: Path) -> None:
    data = aws(tmp_path)
    data["gce"] = {"network": "custom"}
    with pytest.raises(SiteFileError, match="field 'gce': only gce sites take gce options"):
        load_site_file(write(tmp_path, data))
    # A custom network needs no `default`; the options' defaults stand without a `gce:`.
    data = gce(tmp_path)
    data["networks"] = [{"name": "vpc", "cidr": "10.1.0.0/20", "public": False}]
    data["gce"] = {"network": "custom", "zone": "us-central1-f"}
    assert load_site_file(write(tmp_path, data)).gce_options.network == "custom"
    data.pop("gce")
    data["networks"] = [{"name": "default", "cidr": "10.1.0.0/20"}]
    assert load_site_file(write(tmp_path, data)).gce_options.zone == "us-central1-a"
