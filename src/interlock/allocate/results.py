"""What the allocation steps hand each other: small typed results (DBOS checkpoints them)."""

from __future__ import annotations

from dataclasses import dataclass

from interlock.model import Fixup, Frozen
from interlock.providers.base import ServerInfo


class Registered(Frozen):
    """Step 1: the node key's public half, and its name at the site (None: no key API)."""

    public: str
    key_ref: str | None


@dataclass(frozen=True)
class Requested:
    """Step 4: the server as the request's answer showed it, and why it carried groups
    (a dataclass: the provider's ServerInfo is one)."""

    server: ServerInfo
    fixups: tuple[Fixup, ...] = ()
    admits: tuple[str, ...] = ()  # SSH sources the request's groups admit (Opened.admits)


class Addressed(Frozen):
    """Step 5: the node's public address, and the floating IP's ref if one was allocated."""

    ip: str
    ref: str | None
    fixups: tuple[Fixup, ...] = ()


class LoggedIn(Frozen):
    """Step 6: the account the node key logs in to."""

    user: str
    fixups: tuple[Fixup, ...] = ()
