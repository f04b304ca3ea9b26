"""The names of the DBOS queues that durable work is taken from (see interlock.durable)."""

from __future__ import annotations

ROLES = "interlock-roles"  # node-role runs
DEPLOYMENTS = "interlock-deployments"  # detached applies (`apply --detach`)


def site_queue(site: str) -> str:
    """A site's allocations: its queue's global concurrency is the site's `concurrency`."""
    return f"interlock-site-{site}"
