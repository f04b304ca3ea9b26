"""Google's guest environment on a lab node: the accounts the guest agent makes from
`ssh-keys` metadata, and OS Login on or off.

On a real VM the agent polls the metadata server; here the lab applies the same result
from the outside after boot and after every metadata change: a small program (below) runs
inside the node (`nsenter` into its namespaces) and does what the agent does:
- every user of a valid `ssh-keys` entry (`user:ssh-ed25519 AAAA… comment`; instance
  entries, and the project's unless `block-project-ssh-keys` is TRUE) gets an account
  (created if missing, no password, not locked), membership of `google-sudoers` (sudo
  without a password) and exactly those keys in authorized_keys, each after the agent's
  marker line; keys the user added themselves stay;
- an account the agent made whose entries are all gone loses its keys (the file goes
  when nothing else is in it) and its sudo, or is deleted (`deprovision_remove`);
- with OS Login on (the instance's `enable-oslogin`, else the project's; always, where the
  organisation enforces it) `ssh-keys` is ignored: every account the agent made is
  deprovisioned as above. The lab has no OS Login API, so nobody logs in that way.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence

USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
KEY = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+( .*)?$")
TIMEOUT = 30.0

AGENT = r"""
import grp, json, os, pwd, subprocess, sys
want = json.load(sys.stdin)
STATE, MARK = "/var/lib/google/google_users", "# Added by Google"
SUDOERS = "/etc/sudoers.d/google_sudoers"
os.makedirs("/var/lib/google", exist_ok=True)
managed = set(open(STATE).read().split()) if os.path.exists(STATE) else set()

def run(*args, check=True):
    subprocess.run(args, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

def write(path, text, mode, uid=0, gid=0):
    with open(path + ".new", "w") as f:
        f.write(text)
    os.chmod(path + ".new", mode)
    os.chown(path + ".new", uid, gid)
    os.replace(path + ".new", path)

def keys_of(user, keys):
    pw = pwd.getpwnam(user)
    ssh = os.path.join(pw.pw_dir, ".ssh")
    path = os.path.join(ssh, "authorized_keys")
    kept, skip = [], False
    if os.path.exists(path):
        for line in open(path).read().splitlines():
            if line == MARK:
                skip = True
            elif skip:
                skip = False
            else:
                kept.append(line)
    if not keys and not [k for k in kept if k.strip()]:
        if os.path.exists(path):
            os.remove(path)
        return
    os.makedirs(ssh, mode=0o700, exist_ok=True)
    os.chown(ssh, pw.pw_uid, pw.pw_gid)
    text = "".join(k + "\n" for k in kept) + "".join(MARK + "\n" + k + "\n" for k in keys)
    write(path, text, 0o600, pw.pw_uid, pw.pw_gid)

try:
    grp.getgrnam("google-sudoers")
except KeyError:
    run("groupadd", "google-sudoers")
if not os.path.exists(SUDOERS):
    os.makedirs("/etc/sudoers.d", exist_ok=True)
    write(SUDOERS, "%google-sudoers ALL=(ALL:ALL) NOPASSWD:ALL\n", 0o440)
for user, keys in sorted(want["accounts"].items()):
    try:
        pwd.getpwnam(user)
    except KeyError:
        run("useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", user)
    run("gpasswd", "--add", user, "google-sudoers")
    keys_of(user, keys)
for user in sorted(managed - set(want["accounts"])):
    try:
        pwd.getpwnam(user)
    except KeyError:
        continue
    if want["remove"]:
        run("userdel", "--force", "--remove", user, check=False)
    else:
        keys_of(user, [])
        run("gpasswd", "--delete", user, "google-sudoers", check=False)
write(STATE, "".join(u + "\n" for u in sorted(want["accounts"])), 0o644)
"""


class GuestError(RuntimeError):
    pass


def truthy(value: str | None) -> bool | None:
    """A metadata boolean as the agent reads it (TRUE/true/1/yes); None: not set."""
    if value is None:
        return None
    return value.strip().lower() in ("true", "1", "yes", "y", "on")


def os_login(instance: str | None, project: str | None, enforced: bool) -> bool:
    """Whether OS Login is on: the instance's `enable-oslogin`, else the project's."""
    if enforced:
        return True
    own = truthy(instance)
    return own if own is not None else bool(truthy(project))


def accounts(entries: Sequence[str | None]) -> dict[str, list[str]]:
    """The accounts and keys `ssh-keys` values name (invalid lines skipped, as the agent
    logs and skips them; root is never managed)."""
    out: dict[str, list[str]] = {}
    for value in entries:
        for line in (value or "").splitlines():
            user, sep, key = line.strip().partition(":")
            key = key.strip()
            if not sep or not USER.match(user) or user == "root" or not KEY.match(key):
                continue
            if key not in out.setdefault(user, []):
                out[user].append(key)
    return out


def apply(init_pid: int, wanted: dict[str, list[str]], remove: bool) -> None:
    """Make the node's agent-made accounts what `wanted` says (runs inside the node)."""
    done = subprocess.run(
        ["nsenter", "--target", str(init_pid), "--all", "--", "/usr/bin/python3", "-c", AGENT],
        input=json.dumps({"accounts": wanted, "remove": remove}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise GuestError(f"guest agent failed: {lines[-1] if lines else done.returncode}")
