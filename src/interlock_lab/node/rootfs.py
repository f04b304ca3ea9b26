"""A node's first boot, written into its overlay upper dir before it starts.

What cloud-init would have done on a real cloud image happens here as plain file
writes (fast: no process inside the node): the default user with passwordless
sudo, the instance key in its authorized_keys, root's authorized_keys with
cloud-init's redirect, sshd's settings, host keys, hostname. What must happen
*after* sshd answers (a late key, boot-finished) goes into a first-boot script
that the node's init runs once sshd is started.

A node whose image boots systemd gets the same files, plus units in its upper dir:
the first-boot script as a oneshot ordered after ssh.service, the boot delay as a
oneshot ssh.service waits for, a machine id, masks for host services a fresh cloud
VM does not run, Docker and containerd installed but not enabled (their host
enablement links whited out), and tmpfs mounts for /var/lib/docker and
/var/lib/containerd (overlay2 cannot sit on the node's overlay root).

Host isolation: directories that would show the host's secrets or accounts
(/root, /home, /etc/ssh, the lab's own state) are made opaque in the upper dir,
so the node sees fresh, empty ones and everything it writes stays in its upper.
"""

from __future__ import annotations

import os
import shlex
import stat
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from interlock.ssh.keys import ed25519_pair
from interlock_lab.sitefile import Behaviour

FIRSTBOOT = "/var/lib/interlock-lab/firstboot"
BOOT_FINISHED = "/var/lib/cloud/instance/boot-finished"
HIDDEN = ("/root", "/home", "/etc/ssh", "/etc/sudoers.d", "/var/lib/cloud", "/var/log")
UNITS = "/etc/systemd/system"
# Enabled on the lab's host (its OpenStack, packages' defaults) but no part of a fresh
# cloud VM, or meaningless in a node (gettys: the node has no terminals).
MASKED = (
    "mariadb.service", "mysql.service", "postgresql.service", "rabbitmq-server.service",
    "epmd.service", "epmd.socket", "avahi-daemon.service", "avahi-daemon.socket",
    "e2scrub_reap.service", "getty.target", "getty@tty1.service", "console-getty.service",
)  # fmt: skip
# Installed, but a fresh VM has them off: a role's `systemctl enable --now docker` turns
# them on. Their enablement links on the host are whited out in the node.
NOT_ENABLED = ("docker.service", "docker.socket", "containerd.service", "etcd.service")
TMPFS_DIRS = ("/var/lib/docker", "/var/lib/containerd")

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
    if b.init == "systemd":
        _systemd(upper, b.boot_delay)


def _enable(upper: Path, unit: str, target: str, source: str | None = None) -> None:
    link = upper / UNITS.lstrip("/") / f"{target}.wants" / unit
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source or f"{UNITS}/{unit}")


def _whiteout(upper: Path, path: str) -> None:
    """Hide a host file in the node (an overlay whiteout: a 0/0 character device)."""
    target = upper / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() and not target.is_symlink():
        os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _systemd(upper: Path, boot_delay: float) -> None:
    """The units that make a systemd node boot as the first-boot state says."""
    _write(upper, "/etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    units = upper / UNITS.lstrip("/")
    units.mkdir(parents=True, exist_ok=True)
    for unit in MASKED:
        (units / unit).symlink_to("/dev/null")
    for wants in Path(UNITS).glob("*.wants"):
        for unit in NOT_ENABLED:
            if (wants / unit).is_symlink():
                _whiteout(upper, str(wants / unit))
    for where in TMPFS_DIRS:
        name = where.strip("/").replace("/", "-") + ".mount"
        _write(
            upper,
            f"{UNITS}/{name}",
            "[Unit]\n"
            "Description=interlock lab: tmpfs on %f (overlay2 cannot sit on an overlay root)\n"
            "[Mount]\n"
            f"What=tmpfs\nWhere={where}\nType=tmpfs\nOptions=mode=0710\n"
            "[Install]\nWantedBy=local-fs.target\n",
        )
        _enable(upper, name, "local-fs.target")
    # sshd is Debian's ssh.service on the sshd_config written above. Restart=always:
    # a node is reached only over SSH, so sshd comes back however it ended (as the
    # minimal init does); `systemctl stop ssh` still stops it.
    ssh = "[Unit]\n"
    if boot_delay > 0:
        ssh += "Wants=interlock-boot-delay.service\nAfter=interlock-boot-delay.service\n"
        _write(
            upper,
            f"{UNITS}/interlock-boot-delay.service",
            "[Unit]\nDescription=interlock lab: the image's boot delay, before sshd\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart=/bin/sleep {boot_delay:g}\n",
        )
    ssh += "[Service]\nRestart=always\n"
    _write(upper, f"{UNITS}/ssh.service.d/interlock-lab.conf", ssh)
    _enable(upper, "ssh.service", "multi-user.target", "/lib/systemd/system/ssh.service")
    _write(
        upper,
        f"{UNITS}/interlock-firstboot.service",
        "[Unit]\nDescription=interlock lab: first boot, once sshd answers (as cloud-init)\n"
        "After=ssh.service\n"
        "[Service]\nType=oneshot\n"
        f"ExecStart=/bin/sh {FIRSTBOOT}\n"
        "StandardOutput=append:/var/log/firstboot.log\nStandardError=inherit\n"
        "[Install]\nWantedBy=multi-user.target\n",
    )
    _enable(upper, "interlock-firstboot.service", "multi-user.target")
    _write(upper, "/usr/local/sbin/runc", RUNC_WRAPPER, 0o755)


# This machine refuses to lower a process's oom_score_adj, even for root: runc then fails
# to start a container that asks for less than its own ("can't get final child's PID from
# pipe"), as kubelet asks for a pod's infrastructure container (-998). The node's runc
# (first on PATH) raises such a request to what it may have; a lab concern, not the roles'.
RUNC_WRAPPER = """\
#!/bin/sh
# interlock lab: clamp oomScoreAdj to what this machine allows, then the real runc.
bundle=
prev=
for arg in "$@"; do
    case "$prev" in --bundle|-b) bundle=$arg ;; esac
    case "$arg" in --bundle=*) bundle=${arg#--bundle=} ;; esac
    prev=$arg
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
    /usr/bin/python3 - "$bundle/config.json" "$(cat /proc/self/oom_score_adj)" <<'PY'
import json, sys
path, floor = sys.argv[1], int(sys.argv[2])
with open(path) as f:
    doc = json.load(f)
process = doc.get("process") or {}
if process.get("oomScoreAdj") is not None and process["oomScoreAdj"] < floor:
    process["oomScoreAdj"] = floor
    with open(path, "w") as f:
        json.dump(doc, f)
PY
fi
exec /usr/sbin/runc "$@"
"""


def _ssh_dir(upper: Path, who: Account) -> None:
    d = upper / who.home.lstrip("/") / ".ssh"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    os.chown(d, who.uid, who.gid)
