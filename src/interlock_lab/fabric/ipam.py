"""Address pools: which addresses of a range are in use (thread-safe)."""

from __future__ import annotations

import ipaddress
import threading


class PoolExhausted(RuntimeError):
    pass


class AddressPool:
    def __init__(self, cidr: ipaddress.IPv4Network, skip: int = 1) -> None:
        self.cidr = cidr
        self._skip = skip  # leading addresses clouds keep for themselves (gateway, DNS)
        self._used: set[ipaddress.IPv4Address] = set()
        self._lock = threading.Lock()

    def take(self, want: ipaddress.IPv4Address | None = None) -> ipaddress.IPv4Address:
        """Claim `want`, or the lowest free address."""
        with self._lock:
            if want is not None:
                if want not in self.cidr:
                    raise ValueError(f"{want} is not in {self.cidr}")
                if want in self._used:
                    raise ValueError(f"{want} is already in use")
                self._used.add(want)
                return want
            for i, host in enumerate(self.cidr.hosts()):
                if i >= self._skip and host not in self._used:
                    self._used.add(host)
                    return host
        raise PoolExhausted(f"no free address left in {self.cidr}")

    def give_back(self, address: ipaddress.IPv4Address) -> None:
        with self._lock:
            self._used.discard(address)

    def in_use(self) -> set[ipaddress.IPv4Address]:
        with self._lock:
            return set(self._used)
