"""Kernel allowances systemd nodes share with the host.

Every systemd node's PID 1, journald, logind and dbus take inotify instances from root's
one allowance (`fs.inotify.max_user_instances`, 128 on Debian): the nodes run as the
host's root, in no user namespace of their own. A few dozen systemd nodes exhaust it, and
the next node's systemd stalls at boot: its path units fail ("resources") and its jobs
wait for ever, so sshd never starts. The lab raises the allowance at start (never lowers
it), as kind and k3d ask their users to; install.sh keeps it across reboots.
"""

from __future__ import annotations

from pathlib import Path

WANTED = {
    "fs/inotify/max_user_instances": 8192,
    "fs/inotify/max_user_watches": 524288,
}


def raise_limits(proc_sys: Path = Path("/proc/sys")) -> dict[str, int]:
    """Raise each allowance below what the lab wants; returns the ones raised."""
    raised = {}
    for name, wanted in WANTED.items():
        path = proc_sys / name
        try:
            if int(path.read_text()) < wanted:
                path.write_text(f"{wanted}\n")
                raised[name] = wanted
        except (OSError, ValueError):
            continue  # not this kernel's, or not ours to change: nodes may stall, as before
    return raised
