"""Compute Engine API plumbing: credentials, the SDK's clients for one site, errors mapped
into interlock's taxonomy, and calls that wait for the operations they start.

The SDK's own retries are off (`retry=None`): interlock retries what the taxonomy calls
transient itself, under the site's rate limit. Operations are waited on through
operation clients built with this site's endpoint and credentials (the SDK's own
`ExtendedOperation.result()` polls through a client that ignores `api_endpoint`), and a
failed operation (e.g. ZONE_RESOURCE_POOL_EXHAUSTED) is mapped like any failed call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import google.auth
import google.auth.exceptions
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import compute_v1
from google.oauth2 import service_account

from interlock.config import GceSite
from interlock.providers.base import (
    AuthError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    QuotaError,
    TransientError,
)

COMPUTE_SCOPE = "https://www.googleapis.com/auth/compute"
TIMEOUT = 60.0  # seconds for one API call
WAIT_TIMEOUT = 150.0  # operations.wait answers within two minutes, done or not
OPERATION_DEADLINE = 900.0  # seconds an operation may take in all
CHUNK = 50  # names in one list filter, `(name = "a") OR (name = "b") …`
# Error reasons (REST `errors[].reason`, ErrorInfo.reason, operation `errors[].code`).
RATE_LIMITED = {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
QUOTA = {
    "quotaExceeded",
    "QUOTA_EXCEEDED",
    "ZONE_RESOURCE_POOL_EXHAUSTED",
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
    "REGION_RESOURCE_POOL_EXHAUSTED",
}
QUOTA_TEXT = re.compile(
    r"quota|resource[ _]pool[ _]exhausted|does not have enough resources available", re.I
)

# 412 conditionNotMet is also an organisation policy's refusal ("Constraint
# constraints/compute.requireOsLogin violated for project …"), which no retry changes.
ORG_POLICY = re.compile(r"\bconstraints/[a-zA-Z]+\.[a-zA-Z]+")


def one_line(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[:limit]


def last(url: str) -> str:
    """The last path segment of a resource URL (zones/…/instances/NAME → NAME)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def _reasons(e: gexc.GoogleAPICallError) -> set[str]:
    found = {r for r in [e.reason] if r}
    for err in e.errors:
        if isinstance(err, dict):
            found.add(str(err.get("reason") or err.get("code") or ""))
        else:  # compute_v1.Errors, from a failed operation
            found.add(str(getattr(err, "code", "") or ""))
    found.discard("")
    return found


class GceClient:
    """One site's view of the Compute API: its project, zone and region, its clients."""

    def __init__(self, site: str, config: GceSite, credentials: Credentials | None = None) -> None:
        self.site = site
        self.config = config
        self.project = config.project
        self.zone = config.zone
        self.region = config.region or config.zone.rsplit("-", 1)[0]
        self._given = credentials
        self._options = ClientOptions(api_endpoint=config.endpoint) if config.endpoint else None

    @cached_property
    def _credentials(self) -> Credentials:
        if self._given is not None:
            return self._given
        if self.config.credentials == "anonymous":  # an endpoint of its own asking for none
            anonymous: Credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
            return anonymous
        path = self.config.credentials_file
        if path is not None:
            try:
                creds: Credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    str(path), scopes=[COMPUTE_SCOPE]
                )
            except (OSError, ValueError) as e:  # unreadable, not JSON, no usable key
                first = str(e).splitlines()[0] if str(e) else ""
                raise AuthError(
                    self.site,
                    f"service-account key file {path}: {type(e).__name__}: {one_line(first, 200)}",
                ) from None
            return creds
        default, _project = google.auth.default(scopes=[COMPUTE_SCOPE])
        return default

    def _kw(self) -> dict[str, Any]:
        return {"credentials": self._credentials, "client_options": self._options}

    @cached_property
    def instances(self) -> compute_v1.InstancesClient:
        return compute_v1.InstancesClient(**self._kw())

    @cached_property
    def machine_types(self) -> compute_v1.MachineTypesClient:
        return compute_v1.MachineTypesClient(**self._kw())

    @cached_property
    def images(self) -> compute_v1.ImagesClient:
        return compute_v1.ImagesClient(**self._kw())

    @cached_property
    def networks(self) -> compute_v1.NetworksClient:
        return compute_v1.NetworksClient(**self._kw())

    @cached_property
    def addresses(self) -> compute_v1.AddressesClient:
        return compute_v1.AddressesClient(**self._kw())

    @cached_property
    def firewalls(self) -> compute_v1.FirewallsClient:
        return compute_v1.FirewallsClient(**self._kw())

    @cached_property
    def global_operations(self) -> compute_v1.GlobalOperationsClient:
        return compute_v1.GlobalOperationsClient(**self._kw())

    @cached_property
    def zone_operations(self) -> compute_v1.ZoneOperationsClient:
        return compute_v1.ZoneOperationsClient(**self._kw())

    @cached_property
    def region_operations(self) -> compute_v1.RegionOperationsClient:
        return compute_v1.RegionOperationsClient(**self._kw())

    @contextmanager
    def mapped(self) -> Iterator[None]:
        """SDK, auth and transport errors as the taxonomy, with one-line messages.

        Messages carry the HTTP status, the error reasons and Google's message (which
        names the request URL), never credentials.
        """
        try:
            yield
        except ProviderError:
            raise
        except gexc.GoogleAPICallError as e:
            reasons = _reasons(e)
            text = f"{e.message} {' '.join(sorted(reasons))}"
            cls: type[ProviderError]
            if isinstance(e, gexc.TooManyRequests) or reasons & RATE_LIMITED:
                cls = TransientError  # GCE throttles with 403 rateLimitExceeded (or 429)
            elif reasons & QUOTA or QUOTA_TEXT.search(text):
                cls = QuotaError
            elif isinstance(e, gexc.Unauthorized | gexc.Forbidden):
                cls = AuthError
            elif isinstance(e, gexc.NotFound):
                cls = NotFoundError
            elif isinstance(e, gexc.PreconditionFailed) and ORG_POLICY.search(text):
                cls = InvalidRequestError  # an organisation policy refused it: so will a retry
            elif isinstance(e, gexc.ServerError | gexc.PreconditionFailed) or (e.code or 0) >= 500:
                # 412: a metadata fingerprint went stale; reading again and retrying fixes it.
                cls = TransientError
            else:
                cls = InvalidRequestError
            why = ",".join(sorted(reasons))
            msg = f"{e.code or type(e).__name__}{f' {why}' if why else ''}: {e.message}"
            raise cls(self.site, one_line(msg)) from None
        except gexc.RetryError as e:
            raise TransientError(self.site, one_line(f"RetryError: {e.message}")) from None
        except google.auth.exceptions.TransportError as e:
            raise TransientError(self.site, one_line(f"token request failed: {e}")) from None
        except google.auth.exceptions.RefreshError as e:
            first = e.args[0] if e.args and isinstance(e.args[0], str) else type(e).__name__
            cls = TransientError if e.retryable else AuthError
            raise cls(self.site, one_line(f"credentials refused: {first}")) from None
        except google.auth.exceptions.DefaultCredentialsError as e:
            raise AuthError(self.site, one_line(f"no credentials: {e}")) from None
        except requests.RequestException as e:
            raise TransientError(self.site, one_line(f"{type(e).__name__}: {e}")) from None

    def wait(self, op: compute_v1.Operation) -> None:
        """Wait for a zonal or regional operation; a failed one raises its mapped error."""
        deadline = time.monotonic() + OPERATION_DEADLINE
        with self.mapped():
            while not op.done:
                if time.monotonic() > deadline:
                    raise TransientError(self.site, f"operation {op.name} not done in time")
                if not op.zone and not op.region:
                    op = self.global_operations.wait(
                        project=self.project, operation=op.name, retry=None, timeout=WAIT_TIMEOUT
                    )
                elif op.zone:
                    op = self.zone_operations.wait(
                        project=self.project,
                        zone=last(op.zone),
                        operation=op.name,
                        retry=None,
                        timeout=WAIT_TIMEOUT,
                    )
                else:
                    op = self.region_operations.wait(
                        project=self.project,
                        region=last(op.region) or self.region,
                        operation=op.name,
                        retry=None,
                        timeout=WAIT_TIMEOUT,
                    )
            errors = list(op.error.errors)
            if errors or op.http_error_status_code:
                detail = "; ".join(f"{e.code}: {e.message}" for e in errors)
                raise gexc.from_http_status(  # type: ignore[no-untyped-call]
                    op.http_error_status_code or 500,
                    f"operation {op.operation_type} {last(op.target_link)}: "
                    f"{detail or op.http_error_message}",
                    errors=errors,
                )

    def call(self, fn: Callable[..., Any], **kw: Any) -> Any:
        """One API call (the SDK's retries off, a timeout), its errors mapped."""
        with self.mapped():
            return fn(retry=None, timeout=TIMEOUT, **kw)

    def zonal(self, fn: Callable[..., compute_v1.Operation], **kw: Any) -> None:
        """A change to something in the site's zone, waited for until it is done."""
        self.wait(self.call(fn, project=self.project, zone=self.zone, **kw))

    def regional(self, fn: Callable[..., compute_v1.Operation], **kw: Any) -> None:
        """A change to something in the site's region, waited for until it is done."""
        self.wait(self.call(fn, project=self.project, region=self.region, **kw))

    def global_(self, fn: Callable[..., compute_v1.Operation], **kw: Any) -> None:
        """A change to something of the whole project (firewall rules), waited for."""
        self.wait(self.call(fn, project=self.project, **kw))

    def instance(self, name: str) -> compute_v1.Instance:
        found: compute_v1.Instance = self.call(
            self.instances.get, project=self.project, zone=self.zone, instance=name
        )
        return found

    def named(self, names: list[str]) -> list[compute_v1.Instance]:
        """The instances of the zone named in `names` (those there): one filtered listing
        per CHUNK names, its pages read inside the error mapping."""
        wanted = set(names)
        ordered = sorted(wanted)
        found: list[compute_v1.Instance] = []
        for at in range(0, len(ordered), CHUNK):
            either = " OR ".join(f'(name = "{n}")' for n in ordered[at : at + CHUNK])
            request = compute_v1.ListInstancesRequest(
                project=self.project, zone=self.zone, filter=either
            )
            with self.mapped():
                found += list(self.call(self.instances.list, request=request))
        return [i for i in found if i.name in wanted]

    def labelled(self, key: str, value: str) -> list[compute_v1.Instance]:
        request = compute_v1.ListInstancesRequest(
            project=self.project, zone=self.zone, filter=f'labels.{key} = "{value}"'
        )
        found = list(self.call(self.instances.list, request=request))
        return [i for i in found if i.labels.get(key) == value]
