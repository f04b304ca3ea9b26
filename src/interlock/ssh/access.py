"""SSH work of steps 5-8: reachability, login discovery, securing root, removing the node key.

Login discovery never pays a timeout per wrong name: a refused or reset
connection means "not up yet" (retry the same name), an authentication failure
is answered in milliseconds ("wrong user", or "key not installed yet" when every
name fails: retry the round), and cloud-init's
`Please login as the user "X" rather than the user "root".` names the account.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from interlock.ssh.facts import SSHD_T, SshdSettings
from interlock.ssh.remote import (
    BUSY,
    BUSY_FOR,
    AccessError,
    as_root,
    connect,
    run,
    until,
)
from interlock.ssh.sessions import Sessions, end

# Asked for on root's verifying login, after publickey (which logs in): what sshd offers
# of these is then known. No password is given, so none is ever tried.
OFFERED = "publickey,keyboard-interactive,password"
PASSWORDS = {"password", "keyboard-interactive"}
REDIRECT = re.compile(r'Please login as the user "([^"]+)" rather than the user "root"')


@dataclass(frozen=True)
class Login:
    user: str
    fixups: tuple[str, ...]
    tried: tuple[str, ...]


async def wait_for_ssh(host: str, deadline: float, port: int = 22) -> float:
    """Wait until `host` answers with an SSH banner; returns the seconds it took."""
    start = time.monotonic()
    delay = 0.05
    while True:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
            try:
                line = await asyncio.wait_for(reader.readline(), 3)
            finally:
                writer.close()
            if line.startswith(b"SSH-"):
                return time.monotonic() - start
        except (OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AccessError(f"{host}:{port} did not answer SSH in time")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def _try(host: str, user: str, key: asyncssh.SSHKey, sessions: Sessions) -> str:
    """One login attempt: 'ok' (its connection kept in `sessions` for the next step),
    'denied', 'down', or 'redirect:NAME'. Only root runs a command to tell: cloud-init's
    redirect is a forced command on root's key, so a root login that authenticates may
    still be refused; any other account that authenticates is in."""
    try:
        conn = await sessions.open(host, user, key)
    except asyncssh.PermissionDenied:
        return "denied"
    except (OSError, asyncssh.Error, TimeoutError):
        return "down"
    outcome = "ok" if user != "root" else "down"
    try:
        if user == "root":
            outcome = await _root_answer(conn)
    except (OSError, asyncssh.Error, TimeoutError):
        outcome = "down"
    finally:
        if outcome == "ok":
            await sessions.keep(host, user, key, conn)
        else:
            await end(conn)
    return outcome


async def _root_answer(conn: asyncssh.SSHClientConnection) -> str:
    proc = await conn.create_process("echo interlock-ok")
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
    finally:
        proc.close()
    m = REDIRECT.search(str(line))
    if m:
        return f"redirect:{m.group(1)}"
    return "ok" if "interlock-ok" in str(line) else "denied"


async def discover_login(
    host: str,
    key: asyncssh.SSHKey,
    candidates: Sequence[tuple[str, str]],
    deadline: float,
    sessions: Sessions,
) -> Login:
    """Find the account the node key logs in to. `candidates` are (user, source) in order.
    The connection that logged in stays in `sessions` for the steps after."""
    tried: list[str] = []  # every attempt, in order: its length is the true count
    fixups: list[str] = []
    queue = list(dict.fromkeys(u for u, _ in candidates))
    rounds = 0
    while True:
        rounds += 1
        i = 0
        while i < len(queue):  # the queue grows as it goes: a redirect's name comes next
            user = queue[i]
            outcome = await _try(host, user, key, sessions)
            while outcome == "down":
                if time.monotonic() > deadline:
                    raise AccessError(f"{host}: SSH went away during login discovery")
                await asyncio.sleep(0.2)
                outcome = await _try(host, user, key, sessions)
            tried.append(f"{user}:{outcome}")
            if outcome == "ok":
                if len(tried) > 1:  # the first guess was wrong, or the key came late
                    fixups.append(f"login user {user} found by probing ({len(tried)} tries)")
                return Login(user, tuple(fixups), tuple(tried))
            if outcome.startswith("redirect:"):
                named = outcome.split(":", 1)[1]
                if named not in queue[: i + 1]:  # not tried yet this round: it is next
                    if named in queue:
                        queue.remove(named)
                    queue.insert(i + 1, named)
                redirected = f'root redirected to "{named}" by cloud-init'
                if redirected not in fixups:
                    fixups.append(redirected)
            i += 1
        if time.monotonic() > deadline:
            attempts = ", ".join(dict.fromkeys(tried))
            raise AccessError(f"{host}: no account accepted the node key (tried {attempts})")
        # Every name was refused: the key may not be installed yet (slow metadata).
        await asyncio.sleep(min(0.25 * rounds, 2.0))


@dataclass(frozen=True)
class RootState:
    """How a node came: could root log in with the instance key, was password login on."""

    root_by_key: bool
    password_login: bool


# As root, in one command: sshd's settings, then each line of root's authorized keys files
# (AuthorizedKeysFile's tokens, relative to /root) that holds the key body given.
ROOT_KEYS = """set -e
T=$({sshd_t})
printf '%s\\n' "$T" ---
for f in $(printf '%s\\n' "$T" | sed -n 's/^authorizedkeysfile //p'); do
  f=$(printf '%s' "$f" | sed 's|%h|/root|g; s|%u|root|g; s|%%|%|g')
  case $f in /*) ;; *) f=/root/$f ;; esac
  grep -F {body} "$f" 2>/dev/null || true
done
"""


async def root_state(host: str, login: str, key: asyncssh.SSHKey, sessions: Sessions) -> RootState:
    """Root by key is read, not tried, where it cannot work: sshd forbids root, or no
    authorized keys file of root's holds the key without a forced command (cloud-init's
    redirect). Where it may work, a root login tries it for real."""
    body = str(key.export_public_key().decode()).split()[1]
    script = ROOT_KEYS.format(sshd_t=SSHD_T, body=shlex.quote(body))

    async def look() -> str:
        async with sessions.use(host, login, key) as conn:
            return await run(conn, as_root(login, script), "reading sshd's settings")

    out = await until(time.monotonic() + BUSY_FOR, "reading sshd's settings", look, BUSY)
    settings, _, lines = out.partition("---\n")
    sshd = SshdSettings.parse(settings)
    may = _root_may_log_in(sshd, body, lines.splitlines())
    by_key = login == "root" or (may and await _try(host, "root", key, sessions) == "ok")
    return RootState(by_key, sshd.password_login)


def _root_may_log_in(sshd: SshdSettings, body: str, key_lines: list[str]) -> bool:
    if sshd.permit_root_login in ("no", "forced-commands-only"):
        return False
    if sshd.values.get("authorizedkeyscommand", "none") != "none":
        return True  # keys may come from elsewhere too: only a login tells
    # a line is `[options] type body [comment]`: a forced command is among the options
    return any("command=" not in line.split(body, 1)[0] for line in key_lines if body in line)


SECURE = """set -e
umask 077
mkdir -p /root/.ssh
printf '%s\\n' {keys} > /root/.ssh/authorized_keys.interlock
mv /root/.ssh/authorized_keys.interlock /root/.ssh/authorized_keys
chmod 700 /root/.ssh; chmod 600 /root/.ssh/authorized_keys
mkdir -p /etc/ssh/sshd_config.d
{{ echo 'PasswordAuthentication no'; echo 'KbdInteractiveAuthentication no'
  echo 'PermitRootLogin prohibit-password'; }} > /etc/ssh/sshd_config.d/00-interlock.conf
chmod 644 /etc/ssh/sshd_config.d/00-interlock.conf
for k in PasswordAuthentication KbdInteractiveAuthentication PermitRootLogin; do
  sed -i -E "s/^[#[:space:]]*$k[[:space:]].*/# & (see sshd_config.d)/" /etc/ssh/sshd_config
done
grep -q '^Include /etc/ssh/sshd_config.d/\\*.conf' /etc/ssh/sshd_config || \\
  sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
$SSHD -T
if [ -s /run/sshd.pid ]; then kill -HUP "$(cat /run/sshd.pid)";
elif command -v systemctl >/dev/null && systemctl reload ssh 2>/dev/null; then :;
else systemctl reload sshd; fi
"""


async def secure_root(
    host: str,
    login: str,
    node_key: asyncssh.SSHKey,
    platform_public: Sequence[str],
    sessions: Sessions,
) -> None:
    """Step 7: root gets the platform keys; password login off; sshd reloaded once the
    settings it will load (`sshd -T`, which also checks them) are the secured ones. The
    node key stays beside them until step 8 removes it everywhere: so this can run again
    (a resumed step) with the node key, whatever account it logs in to."""
    node_public = str(node_key.export_public_key().decode()).strip()
    keys = " ".join(shlex.quote(k) for k in [*platform_public, node_public])

    async def secure() -> str:
        async with sessions.use(host, login, node_key) as conn:
            return await run(conn, as_root(login, SECURE.format(keys=keys)), "securing root")

    sshd = SshdSettings.parse(
        await until(time.monotonic() + BUSY_FOR, "securing root", secure, BUSY)
    )
    if sshd.password_login:
        raise AccessError("sshd still allows password authentication")
    if sshd.permit_root_login not in ("prohibit-password", "without-password"):
        raise AccessError(f"sshd PermitRootLogin is {sshd.permit_root_login}")


async def verify_root(host: str, platform_key: Path, deadline: float, sessions: Sessions) -> str:
    """Root logs in with a platform key on a new connection, and that login is offered no
    password method (what sshd answers a client with, before any key, is what a password
    guesser gets). Returns the node's SSH host key (for known_hosts); the connection stays
    in `sessions` for step 8, whose command is root's first."""
    key = asyncssh.read_private_key(platform_key)

    async def look() -> tuple[asyncssh.SSHKey | None, list[str]]:
        await sessions.drop(host, "root", key)  # a new login, after the reload
        async with sessions.use(host, "root", key, preferred_auth=OFFERED) as conn:
            return conn.get_server_host_key(), list(conn.get_server_auth_methods())

    # sshd is reloading: its listener comes back within moments.
    host_key, offered = await until(deadline, "root login with the platform key failed", look)
    if PASSWORDS & set(offered):
        raise AccessError(f"sshd still offers {', '.join(sorted(PASSWORDS & set(offered)))}")
    if host_key is None:
        raise AccessError("the node sent no host key")
    return str(host_key.export_public_key().decode()).strip()


async def remove_node_key(
    host: str, platform_key: Path, node_public: str, sessions: Sessions
) -> None:
    """Step 8 on the node: the node key leaves every authorized_keys; verified."""
    body = node_public.split()[1]
    script = f"""set -e
for f in /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys; do
  [ -f "$f" ] || continue
  if grep -qF {shlex.quote(body)} "$f"; then
    grep -vF {shlex.quote(body)} "$f" > "$f.interlock" || true
    chown --reference="$f" "$f.interlock"; chmod 600 "$f.interlock"; mv "$f.interlock" "$f"
  fi
done
! grep -rlF {shlex.quote(body)} /root/.ssh /home/*/.ssh 2>/dev/null
"""
    key = asyncssh.read_private_key(platform_key)

    async def remove() -> None:
        async with sessions.use(host, "root", key) as conn:
            await run(conn, f"sh -c {shlex.quote(script)}", "removing the node key")

    await until(time.monotonic() + BUSY_FOR, "removing the node key", remove, BUSY)


async def install_key_with(
    host: str, bootstrap: Path, user: str, public: str, deadline: float
) -> None:
    """Sites without a key API: put the node key in with the bootstrap (pool) key."""
    key = asyncssh.read_private_key(bootstrap)
    home = "/root" if user == "root" else f"~{user}"
    script = (
        f"set -e; umask 077; mkdir -p {home}/.ssh; "
        f"printf '%s\\n' {shlex.quote(public)} >> {home}/.ssh/authorized_keys"
    )

    async def install() -> None:
        async with await connect(host, user, key) as conn:
            await run(conn, as_root(user, script), "installing the node key")

    await until(deadline, f"the bootstrap key did not log in as {user}", install)
