"""Google Compute Engine through the official SDK (google-cloud-compute, REST transport).

What differs from the other clouds:

- No key-pair API. The node key travels in the instance's metadata item `ssh-keys`
  as `interlock:<public key>`; Google's guest agent creates the account `interlock`
  (with sudo) and writes its authorized_keys. `register_key` only hands back the
  ref; the ref becomes the instance label `interlock-key`, by which `key_exists`
  and `delete_key` find the instances carrying the key. Deleting it rewrites the
  instance metadata without `ssh-keys` (the agent then drops the key on the node).
  The instance also sets `enable-oslogin=FALSE`: with OS Login on, metadata keys
  are ignored.
- Tags become labels: keys and values are lower case `[a-z0-9_-]`, at most 63
  characters, so `interlock:node` is the label `interlock-node`.
- Instance names are unique per zone: the server id is the instance name (the node).
- The public address is an access config (ONE_TO_ONE_NAT) on the first network
  interface: an ephemeral external IP at creation; `attach_public_ip` reserves a
  static regional address and swaps it in, `release_public_ip` undoes that.
- Mutations return zonal or regional operations. They are waited on through
  operation clients built with this site's endpoint and credentials (the SDK's own
  `ExtendedOperation.result()` polls through a client that ignores `api_endpoint`),
  and a failed operation (e.g. ZONE_RESOURCE_POOL_EXHAUSTED) is mapped like any
  failed call.
- The SDK's own retries are off (`retry=None`): interlock retries what the taxonomy
  calls transient itself, under the site's rate limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from pathlib import Path
from typing import Any

import google.auth
import google.auth.exceptions
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import Credentials
from google.cloud import compute_v1
from google.oauth2 import service_account

from interlock.config import GceSite
from interlock.model import Flavor, Image, Metadata, Network
from interlock.providers.base import (
    AuthError,
    InvalidRequestError,
    NodeRequest,
    NotFoundError,
    ProviderError,
    QuotaError,
    ServerInfo,
    TransientError,
)
from interlock.providers.normalize import DEFAULT_USERS, distro_version

COMPUTE_SCOPE = "https://www.googleapis.com/auth/compute"
LOGIN_USER = "interlock"  # the account the guest agent creates from `ssh-keys`
SSH_KEYS = "ssh-keys"
KEY_LABEL = "interlock-key"
NODE_LABEL = "interlock-node"
NAT_NAME = "External NAT"
TIMEOUT = 60.0  # seconds for one API call
WAIT_TIMEOUT = 150.0  # operations.wait answers within two minutes, done or not
OPERATION_DEADLINE = 900.0  # seconds an operation may take in all
ARM_PREFIXES = ("t2a", "c4a", "n4a", "a4x")  # machine series on Arm (Ampere, Axion, Grace)

STATES = {
    "PROVISIONING": "pending",
    "STAGING": "pending",
    "REPAIRING": "pending",
    "RUNNING": "running",
    "STOPPING": "stopped",
    "SUSPENDING": "stopped",
    "SUSPENDED": "stopped",
    "TERMINATED": "stopped",
}
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


def label(text: str) -> str:
    """A tag key or value as a GCE label: lower case [a-z0-9_-], at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def _one_line(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[:limit]


def _last(url: str) -> str:
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


class GceProvider:
    bootstrap: tuple[Path, str] | None = None

    def __init__(self, site: str, config: GceSite, credentials: Credentials | None = None) -> None:
        self.site = site
        self.config = config
        self.project = config.project
        self.zone = config.zone
        self.region = config.region or config.zone.rsplit("-", 1)[0]
        self._given = credentials
        self._options = ClientOptions(api_endpoint=config.endpoint) if config.endpoint else None

    # -- plumbing --------------------------------------------------------------

    @cached_property
    def _credentials(self) -> Credentials:
        if self._given is not None:
            return self._given
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
                    f"service-account key file {path}: {type(e).__name__}: {_one_line(first, 200)}",
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
    def zone_operations(self) -> compute_v1.ZoneOperationsClient:
        return compute_v1.ZoneOperationsClient(**self._kw())

    @cached_property
    def region_operations(self) -> compute_v1.RegionOperationsClient:
        return compute_v1.RegionOperationsClient(**self._kw())

    @contextmanager
    def _mapped(self) -> Iterator[None]:
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
            elif isinstance(e, gexc.ServerError | gexc.PreconditionFailed) or (e.code or 0) >= 500:
                # 412: a metadata fingerprint went stale; reading again and retrying fixes it.
                cls = TransientError
            else:
                cls = InvalidRequestError
            why = ",".join(sorted(reasons))
            msg = f"{e.code or type(e).__name__}{f' {why}' if why else ''}: {e.message}"
            raise cls(self.site, _one_line(msg)) from None
        except gexc.RetryError as e:
            raise TransientError(self.site, _one_line(f"RetryError: {e.message}")) from None
        except google.auth.exceptions.TransportError as e:
            raise TransientError(self.site, _one_line(f"token request failed: {e}")) from None
        except google.auth.exceptions.RefreshError as e:
            first = e.args[0] if e.args and isinstance(e.args[0], str) else type(e).__name__
            cls = TransientError if e.retryable else AuthError
            raise cls(self.site, _one_line(f"credentials refused: {first}")) from None
        except google.auth.exceptions.DefaultCredentialsError as e:
            raise AuthError(self.site, _one_line(f"no credentials: {e}")) from None
        except requests.RequestException as e:
            raise TransientError(self.site, _one_line(f"{type(e).__name__}: {e}")) from None

    def _wait(self, op: compute_v1.Operation) -> None:
        """Wait for a zonal or regional operation; a failed one raises its mapped error."""
        deadline = time.monotonic() + OPERATION_DEADLINE
        with self._mapped():
            while not op.done:
                if time.monotonic() > deadline:
                    raise TransientError(self.site, f"operation {op.name} not done in time")
                if op.zone:
                    op = self.zone_operations.wait(
                        project=self.project,
                        zone=_last(op.zone),
                        operation=op.name,
                        retry=None,
                        timeout=WAIT_TIMEOUT,
                    )
                else:
                    op = self.region_operations.wait(
                        project=self.project,
                        region=_last(op.region) or self.region,
                        operation=op.name,
                        retry=None,
                        timeout=WAIT_TIMEOUT,
                    )
            errors = list(op.error.errors)
            if errors or op.http_error_status_code:
                detail = "; ".join(f"{e.code}: {e.message}" for e in errors)
                raise gexc.from_http_status(  # type: ignore[no-untyped-call]
                    op.http_error_status_code or 500,
                    f"operation {op.operation_type} {_last(op.target_link)}: "
                    f"{detail or op.http_error_message}",
                    errors=errors,
                )

    def _instance(self, name: str) -> compute_v1.Instance:
        with self._mapped():
            return self.instances.get(
                project=self.project, zone=self.zone, instance=name, retry=None, timeout=TIMEOUT
            )

    def _labelled(self, key: str, value: str) -> list[compute_v1.Instance]:
        request = compute_v1.ListInstancesRequest(
            project=self.project, zone=self.zone, filter=f'labels.{key} = "{value}"'
        )
        with self._mapped():
            found = list(self.instances.list(request=request, retry=None, timeout=TIMEOUT))
        return [i for i in found if i.labels.get(key) == value]

    # -- metadata --------------------------------------------------------------

    def metadata(self) -> Metadata:
        return Metadata(flavors=self._flavors(), images=self._images(), networks=self._networks())

    def _flavors(self) -> tuple[Flavor, ...]:
        with self._mapped():
            types = list(
                self.machine_types.list(
                    project=self.project, zone=self.zone, retry=None, timeout=TIMEOUT
                )
            )
        flavors = []
        for t in types:
            if t.deprecated.state and t.deprecated.state != "ACTIVE":
                continue
            arm = t.architecture == "ARM64" or t.name.startswith(ARM_PREFIXES)
            flavors.append(
                Flavor(
                    id=t.name,
                    name=t.name,
                    vcpus=t.guest_cpus,
                    ram_mib=t.memory_mb,
                    gpus=sum(a.guest_accelerator_count for a in t.accelerators),
                    arch="arm64" if arm else "x86_64",
                )
            )
        return tuple(flavors)

    def _images(self) -> tuple[Image, ...]:
        images = []
        for project in self.config.image_projects:
            with self._mapped():
                raw = list(self.images.list(project=project, retry=None, timeout=TIMEOUT))
            for i in raw:
                if i.deprecated.state and i.deprecated.state != "ACTIVE":
                    continue
                if i.status and i.status != "READY":
                    continue
                # GCE writes Ubuntu versions without the dot (ubuntu-2404-lts-amd64).
                texts = [
                    re.sub(r"(ubuntu-(?:[a-z]+-)?)(\d\d)(\d\d)\b", r"\1\2.\3", t)
                    for t in (i.family, i.name)
                ]
                found = distro_version(*texts, i.description)
                if found is None:
                    continue
                distro, version = found
                images.append(
                    Image(
                        id=i.self_link,
                        name=i.name,
                        distro=distro,
                        version=version,
                        arch="arm64" if i.architecture == "ARM64" else "x86_64",
                        login_hints=(LOGIN_USER, *DEFAULT_USERS.get(distro, ())),
                        created=i.creation_timestamp,
                    )
                )
        return tuple(images)

    def _networks(self) -> tuple[Network, ...]:
        with self._mapped():
            raw = list(self.networks.list(project=self.project, retry=None, timeout=TIMEOUT))
        networks = []
        for n in sorted(raw, key=lambda n: (n.name != "default", n.name)):
            here = sorted(s for s in n.subnetworks if f"/regions/{self.region}/subnetworks/" in s)
            if here:  # a subnet-mode VPC: the node goes on its subnet in this region
                networks.append(
                    Network(
                        id=here[0],
                        name=n.name,
                        role="public",
                        evidence=f"subnetwork {_last(here[0])} in {self.region}: an ephemeral "
                        "external IP through a ONE_TO_ONE_NAT access config",
                    )
                )
            elif not n.subnetworks and not n.auto_create_subnetworks:  # a legacy network
                networks.append(
                    Network(
                        id=n.self_link,
                        name=n.name,
                        role="public",
                        evidence="legacy network: an ephemeral external IP through a "
                        "ONE_TO_ONE_NAT access config",
                    )
                )
            else:
                networks.append(
                    Network(
                        id=n.self_link,
                        name=n.name,
                        role="external-unusable",
                        evidence=f"no subnetwork in {self.region}",
                    )
                )
        return tuple(networks)

    # -- keys ------------------------------------------------------------------

    def register_key(self, name: str, public_key: str) -> str:
        return name  # no key API: the key goes into the instance metadata at creation

    def key_exists(self, ref: str) -> bool:
        return any(
            any(item.key == SSH_KEYS for item in i.metadata.items)
            for i in self._labelled(KEY_LABEL, label(ref))
        )

    def delete_key(self, ref: str) -> None:
        for inst in self._labelled(KEY_LABEL, label(ref)):
            items = list(inst.metadata.items)
            if not any(item.key == SSH_KEYS for item in items):
                continue
            kept = compute_v1.Metadata(
                fingerprint=inst.metadata.fingerprint,
                items=[item for item in items if item.key != SSH_KEYS],
            )
            try:
                with self._mapped():
                    op = self.instances.set_metadata_unary(
                        project=self.project,
                        zone=self.zone,
                        instance=inst.name,
                        metadata_resource=kept,
                        retry=None,
                        timeout=TIMEOUT,
                    )
                self._wait(op)
            except NotFoundError:
                continue  # deleted meanwhile: the key went with it

    # -- nodes -----------------------------------------------------------------

    def create_node(self, request: NodeRequest) -> str:
        labels = {label(k): label(v) for k, v in request.tags.items()}
        if request.key_ref:
            labels[KEY_LABEL] = label(request.key_ref)
        items = [compute_v1.Items(key="enable-oslogin", value="FALSE")]
        if request.public_key:
            items.append(
                compute_v1.Items(key=SSH_KEYS, value=f"{LOGIN_USER}:{request.public_key.strip()}")
            )
        nic = compute_v1.NetworkInterface(
            access_configs=[compute_v1.AccessConfig(name=NAT_NAME, type_="ONE_TO_ONE_NAT")]
        )
        where = request.network.id if request.network else "global/networks/default"
        if "/subnetworks/" in where:
            nic.subnetwork = where
        else:
            nic.network = where
        instance = compute_v1.Instance(
            name=request.name,
            machine_type=f"zones/{self.zone}/machineTypes/{request.flavor.id}",
            disks=[
                compute_v1.AttachedDisk(
                    boot=True,
                    auto_delete=True,
                    initialize_params=compute_v1.AttachedDiskInitializeParams(
                        source_image=request.image.id
                    ),
                )
            ],
            network_interfaces=[nic],
            labels=labels,
            metadata=compute_v1.Metadata(items=items),
        )
        with self._mapped():
            op = self.instances.insert_unary(
                project=self.project,
                zone=self.zone,
                instance_resource=instance,
                retry=None,
                timeout=TIMEOUT,
            )
        self._wait(op)
        return request.name

    def describe_node(self, server_id: str) -> ServerInfo:
        try:
            inst = self._instance(server_id)
        except NotFoundError:
            return ServerInfo(server_id, "gone", None, None)
        public = private = None
        if inst.network_interfaces:
            nic = inst.network_interfaces[0]
            private = nic.network_i_p or None
            if nic.access_configs:
                public = nic.access_configs[0].nat_i_p or None
        return ServerInfo(server_id, STATES.get(inst.status, "pending"), public, private)

    def find_node(self, name: str) -> str | None:
        try:
            inst = self._instance(name)
        except NotFoundError:
            return None
        return name if inst.labels.get(NODE_LABEL) == label(name) else None

    def attach_public_ip(self, server_id: str) -> tuple[str, str]:
        ref = f"{server_id}-ip"[:63]
        address = compute_v1.Address(
            name=ref, description=f"interlock: the public address of {server_id}"
        )
        try:
            with self._mapped():
                op = self.addresses.insert_unary(
                    project=self.project,
                    region=self.region,
                    address_resource=address,
                    retry=None,
                    timeout=TIMEOUT,
                )
            self._wait(op)
        except InvalidRequestError as e:
            if "alreadyExists" not in e.detail:  # a repeated step: reuse what it reserved
                raise
        try:
            with self._mapped():
                ip = self.addresses.get(
                    project=self.project,
                    region=self.region,
                    address=ref,
                    retry=None,
                    timeout=TIMEOUT,
                ).address
            inst = self._instance(server_id)
            nic = inst.network_interfaces[0]
            current = list(nic.access_configs)
            if not any(c.nat_i_p == ip for c in current):
                for old in current:
                    with self._mapped():
                        op = self.instances.delete_access_config_unary(
                            project=self.project,
                            zone=self.zone,
                            instance=server_id,
                            access_config=old.name,
                            network_interface=nic.name,
                            retry=None,
                            timeout=TIMEOUT,
                        )
                    self._wait(op)
                config = compute_v1.AccessConfig(name=NAT_NAME, type_="ONE_TO_ONE_NAT", nat_i_p=ip)
                with self._mapped():
                    op = self.instances.add_access_config_unary(
                        project=self.project,
                        zone=self.zone,
                        instance=server_id,
                        network_interface=nic.name,
                        access_config_resource=config,
                        retry=None,
                        timeout=TIMEOUT,
                    )
                self._wait(op)
        except ProviderError:
            with suppress(ProviderError):
                self.release_public_ip(ref)
            raise
        return ip, ref

    def release_public_ip(self, ref: str) -> None:
        try:
            with self._mapped():
                address = self.addresses.get(
                    project=self.project,
                    region=self.region,
                    address=ref,
                    retry=None,
                    timeout=TIMEOUT,
                )
        except NotFoundError:
            return
        if address.status == "IN_USE":
            for user in address.users:
                if "/instances/" in user:
                    self._detach(_last(user), address.address)
        try:
            with self._mapped():
                op = self.addresses.delete_unary(
                    project=self.project,
                    region=self.region,
                    address=ref,
                    retry=None,
                    timeout=TIMEOUT,
                )
            self._wait(op)
        except NotFoundError:
            return

    def _detach(self, instance: str, ip: str) -> None:
        """Take the access config holding `ip` off `instance` (gone already: nothing to do)."""
        try:
            inst = self._instance(instance)
            for nic in inst.network_interfaces:
                for config in nic.access_configs:
                    if config.nat_i_p != ip:
                        continue
                    with self._mapped():
                        op = self.instances.delete_access_config_unary(
                            project=self.project,
                            zone=self.zone,
                            instance=instance,
                            access_config=config.name,
                            network_interface=nic.name,
                            retry=None,
                            timeout=TIMEOUT,
                        )
                    self._wait(op)
        except NotFoundError:
            return

    def delete_node(self, server_id: str) -> None:
        try:
            with self._mapped():
                op = self.instances.delete_unary(
                    project=self.project,
                    zone=self.zone,
                    instance=server_id,
                    retry=None,
                    timeout=TIMEOUT,
                )
            self._wait(op)
        except NotFoundError:
            return
