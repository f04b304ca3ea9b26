"""Turning a cloud's image names into (distro, version): the heuristics layer.

Clouds name images as they please ("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-…",
"RHEL-9.5.0_HVM-…", "debian-12-amd64-…", "CentOS-Stream-9"); metadata such as
os_distro/os_version wins where a cloud provides it.
"""

from __future__ import annotations

import re

# Ordered: the first pattern that matches a lower-cased name decides.
PATTERNS: tuple[tuple[str, str], ...] = (
    (r"ubuntu[^0-9]*?(\d{2}\.\d{2})", "ubuntu"),
    (r"debian[^0-9]*?(\d+)", "debian"),
    (r"al(2023)|amzn[^0-9]*?(\d+)|amazon[^0-9]*?(\d+)", "amzn"),
    (r"rhel[^0-9]*?(\d+)|red ?hat[^0-9]*?(\d+)", "rhel"),
    (r"centos[^0-9]*?(\d+)", "centos"),
    (r"fedora[^0-9]*?(\d+)", "fedora"),
    (r"rocky[^0-9]*?(\d+)", "rocky"),
    (r"alma[^0-9]*?(\d+)", "almalinux"),
)

# The login account each distro's cloud images usually have (cloud-init defaults).
DEFAULT_USERS: dict[str, tuple[str, ...]] = {
    "ubuntu": ("ubuntu",),
    "debian": ("admin", "debian"),
    "amzn": ("ec2-user",),
    "rhel": ("ec2-user", "cloud-user"),
    "centos": ("centos", "cloud-user", "ec2-user"),
    "fedora": ("fedora", "ec2-user"),
    "rocky": ("rocky", "cloud-user"),
    "almalinux": ("almalinux", "cloud-user"),
}
# Tried last, in this order, when nothing else is known.
CANDIDATE_USERS = (
    "ubuntu",
    "admin",
    "debian",
    "ec2-user",
    "centos",
    "cloud-user",
    "fedora",
    "root",
)


def distro_version(*texts: str) -> tuple[str, str] | None:
    """(distro, version) from image names or descriptions, or None."""
    for text in texts:
        low = text.lower()
        for pattern, distro in PATTERNS:
            m = re.search(pattern, low)
            if m:
                version = next(g for g in m.groups() if g)
                return distro, version
    return None


def version_matches(wanted: str | None, have: str) -> bool:
    """'24.04' matches '24.04'; '9' matches '9' and '9.5'; None matches anything."""
    return wanted is None or have == wanted or have.startswith(wanted + ".")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))
