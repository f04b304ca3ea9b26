"""What is known about a site's behaviour, in layers:
declared (the sites file) > learned (found by an allocation, stored with evidence) > heuristics.
"""

from __future__ import annotations

from interlock.config import DeclaredProfile
from interlock.model import Image
from interlock.providers.normalize import CANDIDATE_USERS
from interlock.state import Store


def login_candidates(
    site: str, declared: DeclaredProfile, store: Store, image: Image
) -> list[tuple[str, str]]:
    """(user, source) in the order to try them."""
    out: list[tuple[str, str]] = []
    for key in (image.id, image.distro):
        if key in declared.login_users:
            out.append((declared.login_users[key], "declared"))
    learned = store.fact(site, f"login_user:{image.id}")
    if learned is not None:
        out.append((learned.value, "learned"))
    out += [(u, "image metadata") for u in image.login_hints]
    # root last but one: where it is redirected, cloud-init names the account at once.
    out.append(("root", "root redirect"))
    out += [(u, "candidate") for u in CANDIDATE_USERS if u != "root"]
    return out


def floating_ip(site: str, declared: DeclaredProfile, store: Store) -> bool | None:
    """Whether the site always (True) or never (False) needs a floating IP, where the
    operator declared it or an allocation learned it; None: the network's role decides."""
    if declared.floating_ip is not None:
        return declared.floating_ip
    fact = store.fact(site, "floating_ip")
    return None if fact is None else fact.value == "yes"
