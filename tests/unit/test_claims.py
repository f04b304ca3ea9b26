"""Labs' claims on the machine's loopback: never two labs on one block or port."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interlock_lab import claims
from interlock_lab.claims import ClaimError, Claims, claim
from interlock_lab.sitefile import builtin_sites, load_site_file

Net = ipaddress.IPv4Network


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return tmp_path / "claims"


def test_a_free_block_is_given_as_wanted_and_a_held_one_moves(registry: Path) -> None:
    first = claim(Path("/labs/a"), {"site:aws": Net("127.240.0.0/16")}, {"epmd": 14369}, registry)
    second = claim(Path("/labs/b"), {"site:aws": Net("127.240.0.0/16")}, {"epmd": 14369}, registry)
    assert first.blocks["site:aws"] == Net("127.240.0.0/16") and not first.moved()
    assert second.blocks["site:aws"] == Net("127.241.0.0/16")
    assert second.moved() == {"site:aws": (Net("127.240.0.0/16"), Net("127.241.0.0/16"))}
    assert second.ports["epmd"] == first.ports["epmd"] + 1
    first.release()
    third = claim(Path("/labs/c"), {"site:aws": Net("127.240.0.0/16")}, {}, registry)
    assert third.blocks["site:aws"] == Net("127.240.0.0/16")  # free again once released
    second.release()
    third.release()
    assert not registry.exists()  # the last lab leaves nothing behind


def test_a_dead_labs_record_holds_nothing(registry: Path) -> None:
    # A lab killed with SIGKILL leaves its record, but not the lock on it.
    registry.mkdir(parents=True)
    stale = {"dir": "/labs/dead", "pid": 1, "blocks": {"site:aws": "127.240.0.0/16"}}
    (registry / "deadbeefdeadbeef.json").write_text(json.dumps(stale))
    held = claim(Path("/labs/a"), {"site:aws": Net("127.240.0.0/16")}, {}, registry)
    assert held.blocks["site:aws"] == Net("127.240.0.0/16")
    assert not (registry / "deadbeefdeadbeef.json").exists()
    held.release()


def test_what_something_listens_on_is_skipped(registry: Path) -> None:
    # Labs of an older version, other software: whatever listens there, a lab keeps off.
    with (
        socket.create_server(("127.210.0.7", 0)) as in_block,
        socket.create_server(("127.0.0.1", 0)) as on_port,
    ):
        port, other_port = on_port.getsockname()[1], in_block.getsockname()[1]
        held = claim(Path("/labs/a"), {"x": Net("127.210.0.0/24")}, {"p": port}, registry)
        elsewhere = claim(Path("/labs/b"), {}, {"p": other_port}, registry)
    assert held.blocks["x"] == Net("127.210.1.0/24")
    assert held.ports["p"] > port
    # epmd's port matters on 127.0.0.1 only: a listener on another address is no clash.
    assert elsewhere.ports["p"] == other_port
    held.release()
    elsewhere.release()


def test_blocks_of_one_lab_do_not_overlap_each_other(registry: Path) -> None:
    held = claim(
        Path("/labs/a"), {"a": Net("127.240.0.0/16"), "b": Net("127.240.5.0/24")}, {}, registry
    )
    assert not held.blocks["a"].overlaps(held.blocks["b"])
    held.release()


def test_one_lab_directory_cannot_claim_twice(registry: Path) -> None:
    held = claim(Path("/labs/a"), {"a": Net("127.240.0.0/16")}, {}, registry)
    with pytest.raises(ClaimError, match="already runs"):
        claim(Path("/labs/a"), {"a": Net("127.240.0.0/16")}, {}, registry)
    held.release()


def test_the_reserved_block_is_never_given(registry: Path) -> None:
    # 127.0.0.0/16 holds the host's own loopback services (127.0.0.1).
    held = claim(Path("/labs/a"), {"a": Net("127.255.0.0/16")}, {}, registry)
    other = claim(Path("/labs/b"), {"a": Net("127.255.0.0/16")}, {}, registry)
    assert other.blocks["a"] == Net("127.1.0.0/16")
    held.release()
    other.release()


def test_a_moved_site_keeps_its_networks_in_its_pool() -> None:
    spec = load_site_file(builtin_sites()["os-tenant"])
    moved = spec.moved_to(Net("127.200.3.0/24"))
    assert moved.public.pool == Net("127.200.3.0/24")
    external = next(n for n in moved.networks if n.external)
    assert external.cidr.subnet_of(moved.public.pool)
    tenant = next(n for n in moved.networks if not n.external)
    assert tenant.cidr == next(n for n in spec.networks if not n.external).cidr


blocks = st.builds(
    lambda second, third, prefix: Net((f"127.{second}.{third}.0", prefix), strict=False),
    st.integers(1, 255),
    st.integers(0, 255),
    st.sampled_from([16, 20, 24, 28, 30, 32]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(labs=st.lists(st.lists(blocks, min_size=1, max_size=4), min_size=1, max_size=5))
def test_labs_never_share_an_address(tmp_path: Path, labs: list[list[Net]]) -> None:
    registry = tmp_path / f"r{abs(hash(str(labs)))}"
    held: list[Claims] = []
    try:
        for i, wanted in enumerate(labs):
            c = claim(Path(f"/labs/{i}"), {f"b{j}": b for j, b in enumerate(wanted)}, {}, registry)
            held.append(c)
            for name, want in c.wanted.items():
                assert c.blocks[name].prefixlen == want.prefixlen
                assert not c.blocks[name].overlaps(claims.RESERVED)
        given_out = [b for c in held for b in c.blocks.values()]
        for i, a in enumerate(given_out):
            for b in given_out[i + 1 :]:
                assert not a.overlaps(b), (a, b)
    finally:
        for c in held:
            c.release()
    assert not registry.exists()
