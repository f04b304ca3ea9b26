"""The provider interface: the same few operations for every API kind, and one
error taxonomy every driver maps its SDK's errors into.

Operations are plain blocking calls (the SDKs are blocking); the allocation
workflow runs them off the event loop, under the site's concurrency and rate
limits, and retries only what the taxonomy calls transient.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from interlock.errors import ExitCode, InterlockError
from interlock.firewall import Firewall
from interlock.model import Flavor, Image, Metadata, Network

if TYPE_CHECKING:
    from interlock.state import Store


USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]*@", re.IGNORECASE)


def described(tags: dict[str, str]) -> str:
    """Ownership tags as a description, `interlock:node=web-1 …`, where a resource takes no
    tags at creation (OpenStack's floating IPs and groups, GCE's firewall rules)."""
    return " ".join(f"{k}={v}" for k, v in sorted(tags.items()))


class ProviderError(InterlockError):
    """An SDK error, mapped. `kind` decides retry (transient) and failover (quota)."""

    kind = "error"

    def __init__(self, site: str, message: str) -> None:
        message = USERINFO.sub(r"\1", message)  # an SDK's message may quote a URL with it
        super().__init__(f"{site}: {message}", ExitCode.FAILURE)
        self.site = site
        self.detail = message

    def __reduce__(self) -> tuple[type[ProviderError], tuple[str, str]]:
        # Durable steps record errors by pickling them; keep the constructor's shape.
        return (type(self), (self.site, self.detail))


class AuthError(ProviderError):
    kind = "auth"


class QuotaError(ProviderError):
    """Quota or capacity: this site cannot take the node now; try the next site."""

    kind = "quota"


class NotFoundError(ProviderError):
    kind = "not-found"


class TransientError(ProviderError):
    """Throttled or briefly unavailable: worth retrying with backoff."""

    kind = "transient"


class InvalidRequestError(ProviderError):
    kind = "invalid"


@dataclass(frozen=True)
class NodeRequest:
    name: str
    image: Image
    flavor: Flavor
    network: Network | None
    key_ref: str | None  # the node key registered with the site, if it has a key API
    tags: dict[str, str] = field(default_factory=dict)
    # The node key's public half, for sites that take keys with the request (GCE metadata).
    public_key: str = ""
    # An idempotency token, the same for every try of one request: a site that takes one
    # (EC2's ClientToken, GCE's requestId) never creates twice for a request tried again.
    token: str = ""
    # Groups the node gets at its creation beyond what it gets by default (ids make_group
    # returned, or an operator's group ids or names; GCE: network tags); none: the default.
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerInfo:
    server_id: str
    state: str  # pending | running | stopped | gone
    public_ip: str | None
    private_ip: str | None
    # The node failed where it stands (OpenStack's ERROR: no valid host, …), state left
    # "pending": what describe_node raises; a batched caller raises it for this node alone.
    error: ProviderError | None = None


class ProviderClass(Protocol):
    """What the registry builds a provider with (interlock.providers)."""

    def __call__(self, site: str, config: Any, store: Store) -> Provider: ...


class Provider(Protocol):
    site: str
    # A key that logs in before the node key is there (metal's pool key), with its user.
    bootstrap: tuple[Path, str] | None

    @property
    def api_host(self) -> str:
        """The host name or address of the site's API endpoint."""

    def metadata(self) -> Metadata: ...

    def register_key(
        self, name: str, public_key: str, tags: dict[str, str] | None = None
    ) -> str | None:
        """Register the node key, with the node's ownership tags where keys take tags; None
        when nothing is registered (no key API, or the key goes with the request, in
        NodeRequest.public_key). A key of that name there already is replaced."""

    def delete_key(self, ref: str) -> None: ...

    def key_exists(self, ref: str) -> bool: ...

    def create_node(self, request: NodeRequest) -> ServerInfo:
        """Request a node; returns what the create response tells (its id; "pending" unless
        it says running). Raises QuotaError on capacity."""

    def describe_node(self, server_id: str) -> ServerInfo:
        """One node as the API shows it now; raises the error of a node that failed."""

    def describe_nodes(self, server_ids: list[str]) -> dict[str, ServerInfo]:
        """Every id's node in as few calls as the API allows; ids it does not know are gone."""

    def find_node(self, name: str) -> str | None:
        """The live server carrying node `name`'s ownership tag (a resumed request)."""

    def attach_public_ip(
        self, server_id: str, tags: dict[str, str] | None = None
    ) -> tuple[str, str]:
        """Allocate a floating/elastic IP carrying the node's ownership tags from its
        creation, and associate it; returns (ip, ref)."""

    def public_ips_of(self, node: str) -> list[str]:
        """The refs of every floating/elastic IP carrying node `node`'s ownership tag (what
        a lost record or a failed clean-up left is found this way)."""

    def release_public_ip(self, ref: str) -> None: ...

    def delete_node(self, server_id: str) -> None: ...

    # -- firewalls: security groups, or GCE's firewall rules and network tags --------

    def firewall(self, server_id: str) -> Firewall:
        """The node's groups and their inbound rules as the API shows them (enforced
        False where the site filters nothing)."""

    def firewalls(self, server_ids: list[str]) -> dict[str, Firewall]:
        """`firewall` of every id in as few calls as the API allows; ids the API does not
        show (gone, or no port yet) are left out, where `firewall` would raise."""

    def default_firewall(self, network: Network | None) -> Firewall:
        """What a node requested on `network` with no extra groups gets, as the API shows it."""

    def make_group(
        self,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
        network: Network | None,
    ) -> str:
        """Make or reuse (name, ownership tags) group `name`: TCP `ports` from `sources`, all
        from its members, `tags` from creation; its ref, for NodeRequest.groups."""

    def open_ports(
        self,
        server_id: str,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
    ) -> str:
        """`make_group` on the node's network, and the group attached to the node; its ref."""

    def attach_group(self, server_id: str, group: str) -> str:
        """Attach an existing group (name or id) to the node; returns its id."""

    def groups_of(self, deployment: str) -> list[str]:
        """The ids of the groups carrying deployment `deployment`'s ownership tag."""

    def delete_group(self, ref: str) -> None:
        """Delete a group (and its rules) once no node holds it; gone already is done."""
