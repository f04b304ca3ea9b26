"""A node's first boot, written into its overlay upper dir before it starts.

What cloud-init would have done on a real cloud image happens here as plain file
writes (fast: no process inside the node): the default user with passwordless
sudo, the instance key in its authorized_keys, root's authorized_keys with
cloud-init's redirect, sshd's settings, host keys, hostname. What must happen
*after* sshd answers (a late key, boot-finished) goes into a first-boot script
that the node's init runs once sshd is started.

Host isolation: directories that would show the host's secrets or accounts
(/root, /home, /etc/ssh, the lab's own state) are made opaque in the upper dir,
so the node sees fresh, empty ones and everything it writes stays in its upper.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from interlock.ssh.keys import ed25519_pair
from interlock_lab.sitefile import Behaviour

FIRSTBOOT = "/var/lib/interlock-lab/firstboot"
BOOT_FINISHED = "/var/lib/cloud/instance/boot-finished"
HIDDEN = ("/root", "/home", "/etc/ssh", "/etc/sudoers.d", "/var/lib/cloud", "/var/log")

SSHD_CONFIG = """\
# Written by the interlock lab, like a cloud image's stock sshd_config.
Include /etc/ssh/sshd_config.d/*.conf
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
X11Forwarding no
PrintMotd no
PidFile /run/sshd.pid
MaxStartups 100:30:200
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""


@dataclass(frozen=True)
class FirstBoot:
    """Everything a node needs to know at first boot."""

    hostname: str
    behaviour: Behaviour
    private_ip: str
    instance_keys: tuple[str, ...] = ()
    password_hash: str | None = None
    hide: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def redirect_line(user: str, key: str) -> str:
    """cloud-init's disable_root entry, byte for byte in spirit (exit 142)."""
    cmd = (
        f'echo \'Please login as the user \\"{user}\\" rather than the user \\"root\\".\';'
        "echo;sleep 10;exit 142"
    )
    return f'no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="{cmd}" {key}'


@cache
def _host_file(path: str) -> str:
    return Path(path).read_text()


def _write(
    upper: Path, path: str, text: str, mode: int = 0o644, owner: Account | None = None
) -> None:
    target = upper / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    os.chmod(target, mode)
    if owner is not None:
        os.chown(target, owner.uid, owner.gid)


def _opaque(upper: Path, path: str) -> None:
    d = upper / path.lstrip("/")
    d.mkdir(parents=True, exist_ok=True)
    os.setxattr(d, "trusted.overlay.opaque", b"y")


def _accounts(upper: Path, user: str, password_hash: str | None) -> Account:
    """Add the login user to passwd/shadow/group (copies in the upper dir)."""
    passwd = _host_file("/etc/passwd")
    shadow = _host_file("/etc/shadow")
    group = _host_file("/etc/group")
    entries = {line.split(":")[0]: line.split(":") for line in passwd.splitlines() if line}
    if user == "root":
        account = Account("root", 0, 0, "/root")
    elif user in entries:
        e = entries[user]
        account = Account(user, int(e[2]), int(e[3]), e[5])
    else:
        used = {int(e[2]) for e in entries.values()} | {
            int(line.split(":")[2]) for line in group.splitlines() if line
        }
        uid = next(i for i in range(1000, 60000) if i not in used)
        account = Account(user, uid, uid, f"/home/{user}")
        passwd += f"{user}:x:{uid}:{uid}:{user}:/home/{user}:/bin/bash\n"
        group += f"{user}:x:{uid}:\n"
        shadow += f"{user}:*:19000:0:99999:7:::\n"  # password set below
    lines = []
    for line in shadow.splitlines():
        parts = line.split(":")
        if parts[0] in (user, "root"):
            # A password when the image allows password logins; otherwise "*" (no
            # password, not locked: with UsePAM no, sshd refuses keys for "!" accounts).
            parts[1] = password_hash or "*"
        lines.append(":".join(parts))
    shadow = "\n".join(lines) + "\n"
    _write(upper, "/etc/passwd", passwd)
    _write(upper, "/etc/group", group)
    _write(upper, "/etc/shadow", shadow, 0o640)
    return account


def prepare(upper: Path, boot: FirstBoot) -> None:
    """Write the node's first-boot state into `upper` (an empty directory)."""
    b = boot.behaviour
    for path in (*HIDDEN, *boot.hide):
        _opaque(upper, path)
    _write(upper, "/etc/hostname", boot.hostname + "\n")
    _write(
        upper,
        "/etc/hosts",
        f"127.0.0.1 localhost\n{boot.private_ip} {boot.hostname}\n",
    )
    # The node's resolver is its own loopback: no query ever leaves the lab.
    _write(upper, "/etc/resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    private, public = ed25519_pair()
    _write(upper, "/etc/ssh/ssh_host_ed25519_key", private, 0o600)
    _write(upper, "/etc/ssh/ssh_host_ed25519_key.pub", public + "\n")
    _write(upper, "/etc/ssh/sshd_config", SSHD_CONFIG)
    _write(
        upper,
        "/etc/ssh/sshd_config.d/50-cloud-init.conf",
        f"PasswordAuthentication {'yes' if b.password_auth else 'no'}\n",
    )

    root = Account("root", 0, 0, "/root")
    user = _accounts(upper, b.login_user, boot.password_hash)
    if user != root:
        _opaque(upper, user.home)
        os.chown(upper / user.home.lstrip("/"), user.uid, user.gid)
        _write(
            upper,
            "/etc/sudoers.d/90-cloud-init-users",
            f"# Created by cloud-init\n{user.name} ALL=(ALL) "
            + ("NOPASSWD:ALL\n" if b.sudo == "nopasswd" else "ALL\n"),
            0o440,
        )

    keys = "".join(k.strip() + "\n" for k in boot.instance_keys)
    root_keys = ""
    if user != root and b.root_login == "redirect":
        root_keys = "".join(redirect_line(user.name, k.strip()) + "\n" for k in boot.instance_keys)
    elif user != root and b.root_login == "key":
        root_keys = keys
    _ssh_dir(upper, root)
    if root_keys:
        _write(upper, "/root/.ssh/authorized_keys", root_keys, 0o600)
    if user != root:
        _ssh_dir(upper, user)

    script = ["set -e"]
    auth = f"{user.home}/.ssh/authorized_keys"
    if b.key_delay > 0 and keys:
        # A slow metadata service: sshd answers before the key is there.
        script += [
            f"sleep {b.key_delay}",
            f"printf %s {shlex.quote(keys)} > {auth}.tmp",
            f"chown {user.uid}:{user.gid} {auth}.tmp && chmod 600 {auth}.tmp",
            f"mv {auth}.tmp {auth}",
        ]
    elif keys:
        _write(upper, auth, keys, 0o600, user)
    if b.post_provisioning == "complete":
        script += [f"mkdir -p {Path(BOOT_FINISHED).parent}", f"date +%s > {BOOT_FINISHED}"]
    _write(upper, FIRSTBOOT, "\n".join(script) + "\n", 0o700)


def _ssh_dir(upper: Path, who: Account) -> None:
    d = upper / who.home.lstrip("/") / ".ssh"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    os.chown(d, who.uid, who.gid)
