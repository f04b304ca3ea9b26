"""The ledger's bookkeeping and the address pools."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from interlock_lab.fabric.ipam import AddressPool, PoolExhausted
from interlock_lab.ledger import Ledger


def test_ledger_tracks_outstanding_per_site(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.created("aws", "server", "i-1")
    ledger.created("aws", "keypair", "k")
    ledger.created("metal", "server", "m-01")
    ledger.released("aws", "server", "i-1")
    ledger.released("aws", "server", "i-unknown")  # releasing what was never made: no-op
    assert [e.rid for e in ledger.entries("aws", outstanding=True)] == ["k"]
    assert len(ledger.entries()) == 3
    # A machine powered on twice is two entries; each release closes one.
    ledger.released("metal", "server", "m-01")
    ledger.created("metal", "server", "m-01")
    assert [e.released is None for e in ledger.entries("metal")] == [False, True]
    ledger.close()


def test_pool_hands_out_lowest_free_and_refuses_duplicates() -> None:
    pool = AddressPool(ipaddress.IPv4Network("127.50.0.0/29"), skip=1)
    first = pool.take()
    assert first == ipaddress.IPv4Address("127.50.0.2")
    with pytest.raises(ValueError, match="already in use"):
        pool.take(first)
    with pytest.raises(ValueError, match="not in"):
        pool.take(ipaddress.IPv4Address("127.51.0.1"))
    taken = [pool.take() for _ in range(4)]  # a /29 has 6 hosts; the first is kept back
    with pytest.raises(PoolExhausted):
        pool.take()
    pool.give_back(taken[0])
    assert pool.take() == taken[0]
