"""Selection, image-name normalization and login-candidate order."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.config import DeclaredProfile
from interlock.errors import ExitCode
from interlock.model import Flavor, Image, Metadata, Network, Traits
from interlock.profiles import login_candidates
from interlock.providers.normalize import distro_version
from interlock.selection import NoMatch, choose
from interlock.state import open_store

FLAVORS = (
    Flavor(id="big", name="big", vcpus=8, ram_mib=32768),
    Flavor(id="small", name="small", vcpus=2, ram_mib=4096),
    Flavor(id="tiny", name="tiny", vcpus=1, ram_mib=1024),
    Flavor(id="arm", name="arm", vcpus=2, ram_mib=4096, arch="arm64"),
)
IMAGES = (
    Image(id="u2204", name="u2204", distro="ubuntu", version="22.04"),
    Image(id="u2404-old", name="u2404-old", distro="ubuntu", version="24.04", created="2024-01"),
    Image(id="u2404-new", name="u2404-new", distro="ubuntu", version="24.04", created="2024-11"),
    Image(id="rhel95", name="rhel95", distro="rhel", version="9.5"),
)


def meta(*networks: Network) -> Metadata:
    return Metadata(flavors=FLAVORS, images=IMAGES, networks=networks)


def test_smallest_flavor_and_newest_image_that_fit() -> None:
    pub = Network(id="n1", name="n1", role="public", evidence="router:external")
    c = choose("s", meta(pub), Traits(cpus=2, memory_gib=4, os="ubuntu-24.04"))
    assert (c.flavor.id, c.image.id, c.network, c.needs_floating_ip) == (
        "small",
        "u2404-new",
        pub,
        False,
    )
    assert choose("s", meta(pub), Traits(os="rhel-9")).image.id == "rhel95"  # 9 matches 9.5
    assert choose("s", meta(pub), Traits(os="ubuntu")).image.id in ("u2404-new",)


def test_network_roles_decide_floating_ip_and_declared_wins() -> None:
    private = Network(id="p", name="private", role="private", evidence="no public IP")
    public = Network(id="q", name="outside", role="public", evidence="probe")
    assert choose("s", meta(private), Traits()).needs_floating_ip
    assert choose("s", meta(private, public), Traits()).network == public
    declared = choose("s", meta(private, public), Traits(), declared_network="private")
    assert declared.network == private and not declared.needs_floating_ip
    # A floating-IP pool is never booted on, nor is a network no router takes outside.
    pool = Network(id="x", name="ext", role="external-usable", evidence="router:external")
    closed = private.model_copy(update={"id": "c", "name": "closed", "reaches_outside": False})
    assert choose("s", meta(pool, closed, private), Traits()).network == private
    assert choose("s", meta(pool, closed), Traits()).network is None


def test_images_tied_to_hardware_restrict_flavors() -> None:
    img = Image(id="m", name="m", distro="debian", version="12", only_flavors=("big",))
    c = choose("s", Metadata(flavors=FLAVORS, images=(img,), networks=()), Traits(os="debian-12"))
    assert c.flavor.id == "big"


@pytest.mark.parametrize(
    ("traits", "message"),
    [(Traits(cpus=64), "no flavor"), (Traits(os="windows-11"), "no image of windows-11")],
)
def test_nothing_fits_is_a_bad_request(traits: Traits, message: str) -> None:
    with pytest.raises(NoMatch, match=message) as e:
        choose("s", meta(), traits)
    assert e.value.code == ExitCode.BAD_INPUT


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20241109", ("ubuntu", "24.04")),
        ("debian-12-amd64-20241110-1927", ("debian", "12")),
        ("al2023-ami-2023.6.20241111.0-kernel-6.1-x86_64", ("amzn", "2023")),
        ("RHEL-9.5.0_HVM-20241211-x86_64-0-Hourly2-GP3", ("rhel", "9")),
        ("CentOS-Stream-9", ("centos", "9")),
    ],
)
def test_image_names_normalize(name: str, expected: tuple[str, str]) -> None:
    assert distro_version(name) == expected
    assert distro_version("windows-server-2022") is None


def test_login_candidates_are_layered(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    img = Image(id="i", name="i", distro="rhel", version="9", login_hints=("ec2-user",))
    plain = [u for u, _ in login_candidates("s", DeclaredProfile(), store, img)]
    assert plain[0] == "ec2-user" and plain.index("root") < plain.index("cloud-user")
    store.learn("s", "login_user:i", "cloud-user", "test")
    learned = login_candidates("s", DeclaredProfile(), store, img)
    assert learned[0] == ("cloud-user", "learned")
    declared = login_candidates("s", DeclaredProfile(login_users={"rhel": "admin"}), store, img)
    assert declared[:2] == [("admin", "declared"), ("cloud-user", "learned")]
