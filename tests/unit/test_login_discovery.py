"""Login discovery's order: declared, learned, image metadata, root (whose cloud-init
redirect names the account, tried next), then common names; the tries counted truly."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncssh
import pytest

from interlock.ssh import access
from interlock.ssh.sessions import Sessions


class Node:
    """A node that accepts the key for `user` once `key_after` attempts have been made."""

    def __init__(self, user: str, redirect: bool = True, key_after: int = 0) -> None:
        self.user, self.redirect, self.key_after = user, redirect, key_after
        self.attempts: list[str] = []

    async def __call__(self, host: str, user: str, key: Any, sessions: Any) -> str:
        self.attempts.append(user)
        if user == "root" and self.redirect:
            return f"redirect:{self.user}"
        if user == self.user and len(self.attempts) > self.key_after:
            return "ok"
        return "denied"


def discover(monkeypatch: pytest.MonkeyPatch, node: Node, *users: str) -> access.Login:
    monkeypatch.setattr(access, "_try", node)
    candidates = [(u, "test") for u in users]
    key = asyncssh.generate_private_key("ssh-ed25519")
    sessions = Sessions()
    return asyncio.run(access.discover_login("h", key, candidates, time.monotonic() + 30, sessions))


COMMON = ("root", "ubuntu", "admin", "debian", "ec2-user", "centos", "cloud-user", "fedora")


def test_the_account_a_redirect_names_is_tried_next(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node("cloud-user")
    found = discover(monkeypatch, node, *COMMON)
    assert node.attempts == ["root", "cloud-user"]
    assert found.user == "cloud-user"
    assert found.fixups == (
        'root redirected to "cloud-user" by cloud-init',
        "login user cloud-user found by probing (2 tries)",
    )


def test_a_right_first_guess_needs_no_fixup(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node("ubuntu")
    found = discover(monkeypatch, node, "ubuntu", *COMMON)
    assert (found.user, found.fixups, node.attempts) == ("ubuntu", (), ["ubuntu"])


def test_without_a_redirect_common_names_are_probed_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node = Node("centos", redirect=False)
    found = discover(monkeypatch, node, "ec2-user", *COMMON)
    assert node.attempts == ["ec2-user", "root", "ubuntu", "admin", "debian", "centos"]
    assert found.fixups == ("login user centos found by probing (6 tries)",)


def test_a_late_key_counts_every_try_of_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    # The key lands after the first round: the redirect is noted once, the count is true.
    node = Node("dhc-user", key_after=3)
    found = discover(monkeypatch, node, "ubuntu", "root")
    assert node.attempts == ["ubuntu", "root", "dhc-user", "ubuntu", "root", "dhc-user"]
    assert found.fixups == (
        'root redirected to "dhc-user" by cloud-init',
        "login user dhc-user found by probing (6 tries)",
    )
