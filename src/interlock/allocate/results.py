"""What the allocation steps hand each other: small typed results (DBOS checkpoints them)."""

from __future__ import annotations

from interlock.model import Fixup, Frozen


class Registered(Frozen):
    """Step 1: the node key's public half, and its name at the site (None: no key API)."""

    public: str
    key_ref: str | None


class Addressed(Frozen):
    """Step 5: the node's public address, and the floating IP's ref if one was allocated."""

    ip: str
    ref: str | None
    fixups: tuple[Fixup, ...] = ()


class LoggedIn(Frozen):
    """Step 6: the account the node key logs in to."""

    user: str
    fixups: tuple[Fixup, ...] = ()
