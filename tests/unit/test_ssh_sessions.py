"""A node's logins are paid once across steps 6-8, and root's verification sees what a
password guesser would: against a real SSH server (asyncssh's) on loopback, counting the
connections it accepts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from interlock.ssh import access, keys
from interlock.ssh.remote import AccessError
from interlock.ssh.sessions import Sessions

HOST = "127.0.0.1"
SECURED = "passwordauthentication no\npermitrootlogin prohibit-password\n"


class Node(asyncssh.SSHServer):
    """An sshd that takes `keys` by public key, offers passwords when told, answers the
    read of root's keys with `sshd_t` and `root_lines`, `sshd -T` with the secured
    settings and anything else with `interlock-ok`; it counts connections by user."""

    def __init__(self, shared: dict[str, Any]) -> None:
        self.shared = shared

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.shared["connections"] += 1

    def begin_auth(self, username: str) -> bool:
        self.shared["users"].append(username)
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.export_public_key() in self.shared["keys"]

    def password_auth_supported(self) -> bool:
        return bool(self.shared["passwords"])

    def validate_password(self, username: str, password: str) -> bool:
        return False


@asynccontextmanager
async def node(passwords: bool) -> AsyncIterator[tuple[int, dict[str, Any], asyncssh.SSHKey]]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    shared: dict[str, Any] = {
        "connections": 0,
        "users": [],
        "keys": {key.export_public_key()},
        "passwords": passwords,
        "sshd_t": "",
        "root_lines": "",
    }

    async def answer(process: asyncssh.SSHServerProcess[str]) -> None:
        command = process.command or ""
        if "authorizedkeysfile" in command:  # root_state's read
            process.stdout.write(f"{shared['sshd_t']}---\n{shared['root_lines']}")
        else:
            process.stdout.write(SECURED if "sshd" in command else "interlock-ok\n")
        process.exit(0)

    server = await asyncssh.create_server(
        lambda: Node(shared),
        HOST,
        0,
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        process_factory=answer,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, shared, key
    finally:
        server.close()
        await server.wait_closed()


def on_port(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """interlock connects to port 22; the test server listens elsewhere."""
    real = asyncssh.connect
    monkeypatch.setattr(asyncssh, "connect", lambda *a, **kw: real(*a, port=port, **kw))


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_discovery_login_is_used_again_by_the_steps_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def test() -> None:
        async with node(passwords=False) as (port, shared, key):
            on_port(monkeypatch, port)
            sessions = Sessions()
            found = await access.discover_login(HOST, key, [("ubuntu", "t")], 1e12, sessions)
            assert found.user == "ubuntu"
            await access.secure_root(HOST, "ubuntu", key, ["ssh-ed25519 AAAA x"], sessions)
            assert shared["connections"] == 1  # the same login did both
            assert len(sessions) == 1
            await sessions.close(HOST)
            assert len(sessions) == 0

    run(test)


def test_a_login_that_fails_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    async def test() -> None:
        async with node(passwords=False) as (port, shared, key):
            on_port(monkeypatch, port)
            sessions = Sessions()
            with pytest.raises(RuntimeError):
                async with sessions.use(HOST, "ubuntu", key):
                    raise RuntimeError("the step failed half-way")
            assert len(sessions) == 0
            async with sessions.use(HOST, "ubuntu", key) as conn:
                assert (await conn.run("true")).exit_status == 0
            assert shared["connections"] == 2
            await sessions.close(HOST)

    run(test)


@pytest.mark.parametrize("passwords", [False, True])
def test_verify_fails_where_sshd_still_offers_passwords(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, passwords: bool
) -> None:
    async def test() -> None:
        async with node(passwords=passwords) as (port, shared, _):
            on_port(monkeypatch, port)
            platform = tmp_path / "platform"
            keys.new_key(platform, "platform")
            shared["keys"].add(asyncssh.read_private_key(platform).export_public_key())
            sessions = Sessions()
            if passwords:
                with pytest.raises(AccessError, match=r"sshd still offers .*password"):
                    await access.verify_root(HOST, platform, 1e12, sessions)
            else:
                assert (await access.verify_root(HOST, platform, 1e12, sessions)).startswith(
                    "ssh-ed25519 "
                )
                # step 8 logs in as root the same way: the verifying login is kept for it
                async with sessions.use(HOST, "root", platform) as conn:
                    assert (await conn.run("true")).exit_status == 0
                assert shared["connections"] == 1
            await sessions.close(HOST)

    run(test)


REDIRECT = (
    'no-port-forwarding,command="echo \'Please login as the user \\"ubuntu\\" rather than '
    'the user \\"root\\".\';echo;sleep 10;exit 142" ssh-ed25519 {body} node\n'
)


@pytest.mark.parametrize(
    ("permit", "line", "by_key", "root_tried"),
    [
        ("prohibit-password", REDIRECT, False, False),  # cloud-init's forced command
        ("prohibit-password", "", False, False),  # root has no such key
        ("no", "ssh-ed25519 {body} node\n", False, False),  # sshd forbids root
        ("prohibit-password", "ssh-ed25519 {body} node\n", True, True),  # tried for real
    ],
)
def test_root_by_key_is_read_and_tried_only_where_it_may_work(
    monkeypatch: pytest.MonkeyPatch, permit: str, line: str, by_key: bool, root_tried: bool
) -> None:
    async def test() -> None:
        async with node(passwords=False) as (port, shared, key):
            on_port(monkeypatch, port)
            body = key.export_public_key().decode().split()[1]
            shared["sshd_t"] = f"permitrootlogin {permit}\npasswordauthentication yes\n"
            shared["root_lines"] = line.format(body=body)
            sessions = Sessions()
            state = await access.root_state(HOST, "ubuntu", key, sessions)
            assert state == access.RootState(root_by_key=by_key, password_login=True)
            assert ("root" in shared["users"]) is root_tried
            await sessions.close(HOST)

    run(test)


def test_handshakes_at_once_are_capped_and_every_login_gets_its_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hundreds of logins at once would each outlast the connect timeout on a small host:
    # at most HANDSHAKES are under way, the others wait (untimed) for a turn.
    from interlock.ssh import remote

    monkeypatch.setattr(remote, "HANDSHAKES", 3)

    async def test() -> None:
        async with node(passwords=False) as (port, shared, key):
            real = asyncssh.connect
            at_once = {"now": 0, "most": 0}

            async def counted(*a: Any, **kw: Any) -> asyncssh.SSHClientConnection:
                at_once["now"] += 1
                at_once["most"] = max(at_once["most"], at_once["now"])
                try:
                    conn: asyncssh.SSHClientConnection = await real(*a, port=port, **kw)
                    return conn
                finally:
                    at_once["now"] -= 1

            monkeypatch.setattr(asyncssh, "connect", counted)
            conns = await asyncio.gather(*(remote.connect(HOST, "u", key) for _ in range(10)))
            assert shared["connections"] == 10 and at_once["most"] == 3
            for conn in conns:
                conn.close()
                await conn.wait_closed()

    run(test)
