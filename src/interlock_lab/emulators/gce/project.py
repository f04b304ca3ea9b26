"""One Compute Engine project in the lab: its instances (sandbox nodes), static addresses,
firewall rules and operations.

Every change answers at once with an operation (RUNNING) whose work runs on a worker
thread; `wait` and `get` show it DONE, or DONE with Google's error, when the work ends.
Work that boots or stops nodes calls the lab's runtime (its event loop) and is never done
holding the data lock: the firewall guard reads the data from that loop.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from interlock_lab.emulators.base import SiteContext, password_hash
from interlock_lab.emulators.gce import firewall, guest
from interlock_lab.emulators.gce.catalog import Catalog
from interlock_lab.emulators.gce.resources import (
    NAME,
    AccessConfig,
    Address,
    Firewall,
    GceError,
    Instance,
    Links,
    Operation,
    OperationFailed,
    fingerprint,
    invalid,
    not_found,
    now,
)
from interlock_lab.fabric.ipam import AddressPool, PoolExhausted
from interlock_lab.node.rootfs import FirstBoot

R = TypeVar("R")  # a resource kind's model

LOG = logging.getLogger(__name__)
WAIT_SECONDS = 60.0  # operations.wait answers by then, done or not (Google: two minutes)
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
NAT = "External NAT"
OS_LOGIN_POLICY = "constraints/compute.requireOsLogin"


def last(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[-1]


class Project:
    def __init__(self, ctx: SiteContext, url: str) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.options = self.spec.gce_options
        self.links = Links(
            f"{url}/compute/v1", self.options.project, self.spec.region, self.options.zone
        )
        self.catalog = Catalog(self.spec, self.links)
        self.lock = threading.RLock()  # the data; never held across a call into the runtime
        self._syncing = threading.Lock()  # publishing and filtering, one at a time
        self.instances: dict[str, Instance] = {}
        self.addresses: dict[str, Address] = {}
        self.firewalls: dict[str, Firewall] = {r.name: r for r in self.catalog.default_rules()}
        self.operations: dict[str, Operation] = {}
        self.requests: dict[str, str] = {}  # requestId -> operation name
        self.pool = AddressPool(self.spec.public.pool)
        self.private = {n.name: AddressPool(n.cidr, skip=1) for n in self.spec.networks}
        self.published: dict[ipaddress.IPv4Address, str] = {}
        self.guard = GceFirewall(self) if self.spec.firewall.enforced else None
        self._password_hash: str | None = None
        self._work = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"gce-{self.spec.name}")

    def close(self) -> None:
        self._work.shutdown(wait=True, cancel_futures=True)

    @property
    def project(self) -> str:
        return self.options.project

    # -- operations -----------------------------------------------------------------

    def _operation(
        self,
        scope: str,
        kind: str,
        target: str,
        target_id: str,
        work: Callable[[], None],
        request_id: str | None = None,
    ) -> Operation:
        op = Operation(Operation.new_name(), scope, kind, target, target_id)
        with self.lock:
            self.operations[op.name] = op
            if request_id:
                self.requests[request_id] = op.name
        self._work.submit(self._run, op, work)
        return op

    def _run(self, op: Operation, work: Callable[[], None]) -> None:
        if self.options.operation_delay:
            time.sleep(self.options.operation_delay)
        try:
            work()
        except OperationFailed as e:
            op.error = e
        except GceError as e:
            op.error = OperationFailed(e.reason.upper(), e.message, e.code)
        except Exception as e:  # the lab's own trouble: shown, and logged in full
            LOG.exception("gce operation %s failed", op.name)
            op.error = OperationFailed("INTERNAL_ERROR", f"lab: {type(e).__name__}: {e}", 500)
        finally:
            op.status, op.ended = "DONE", now()
            op.finished.set()

    def operation(self, scope: str, name: str) -> Operation:
        op = self.operations.get(name)
        if op is None or op.scope != scope:
            raise not_found(f"projects/{self.project}/{scope}/operations/{name}")
        return op

    def wait(self, scope: str, name: str) -> Operation:
        op = self.operation(scope, name)
        op.finished.wait(WAIT_SECONDS)
        return op

    def zone_scope(self) -> str:
        return f"zones/{self.links.zone}"

    def region_scope(self) -> str:
        return f"regions/{self.links.region}"

    # -- instances ------------------------------------------------------------------

    def _found(self, table: dict[str, R], path: str, name: str) -> R:
        """`name` in `table`, or Google's 404 for projects/PROJECT/`path`/`name`."""
        item = table.get(name)
        if item is None:
            raise not_found(f"projects/{self.project}/{path}/{name}")
        return item

    def _new_name(self, body: dict[str, Any], table: dict[str, Any], path: str) -> str:
        """The name a create asks for: valid, and not taken in `table` (400 or 409)."""
        name = str(body.get("name") or "")
        if not re.fullmatch(NAME, name):
            raise invalid(
                f"Invalid value for field 'resource.name': '{name}'. Must be a "
                f"match of regex '{NAME}'"
            )
        if name in table:
            raise GceError(
                409,
                "alreadyExists",
                f"The resource 'projects/{self.project}/{path}/{name}' already exists",
            )
        return name

    def _replayed(self, request_id: str | None) -> Operation | None:
        """The operation a retried request (the same requestId) started the first time."""
        if request_id and request_id in self.requests:
            return self.operations[self.requests[request_id]]
        return None

    def instance(self, name: str) -> Instance:
        return self._found(self.instances, f"zones/{self.links.zone}/instances", name)

    def _check_os_login(self, items: list[dict[str, str]]) -> None:
        """An organisation that enforces OS Login refuses metadata turning it off."""
        value = next((i.get("value") for i in items if i.get("key") == "enable-oslogin"), None)
        if self.options.os_login_enforced and guest.truthy(value) is False:
            raise GceError(
                412,
                "conditionNotMet",
                f"Constraint {OS_LOGIN_POLICY} violated for project {self.project}. "
                "OS Login is enforced: metadata 'enable-oslogin' cannot be set to FALSE.",
            )

    def insert_instance(self, body: dict[str, Any], request_id: str | None) -> Operation:
        with self.lock:
            if (first := self._replayed(request_id)) is not None:
                return first
            name = self._new_name(body, self.instances, f"zones/{self.links.zone}/instances")
            flavor = self.catalog.flavor(last(str(body.get("machineType") or "")))
            boot = next((d for d in body.get("disks") or [] if d.get("boot")), None)
            source = ((boot or {}).get("initializeParams") or {}).get("sourceImage")
            if not source:
                raise invalid(
                    "Invalid value for field 'resource.disks': ''. Boot disk must be specified."
                )
            image = self.catalog.source_image(str(source))
            nics = body.get("networkInterfaces") or []
            if len(nics) != 1:
                raise invalid(
                    "Invalid value for field 'resource.networkInterfaces': the lab's "
                    "instances have exactly one network interface."
                )
            nic = nics[0]
            net = self.catalog.network_of(
                str(nic.get("subnetwork") or nic.get("network") or "global/networks/default")
            )
            configs = self._access_configs(nic.get("accessConfigs") or [])
            metadata = _items(body.get("metadata"))
            self._check_os_login(metadata)
            labels = _labels(body.get("labels") or {})
            tags = [str(t) for t in (body.get("tags") or {}).get("items") or []]
            try:
                ip = self.private[net.name].take()
            except PoolExhausted:
                raise GceError(
                    503, "resourceExhausted", f"IP space of subnetwork '{net.name}' is exhausted"
                ) from None
            inst = Instance(
                name=name,
                machine_type=flavor.name,
                image=image,
                network=net.name,
                network_ip=str(ip),
                access_configs=configs,
                metadata=metadata,
                labels=labels,
                tags=tags,
                description=str(body.get("description") or ""),
                service_accounts=list(body.get("serviceAccounts") or []),
            )
            self.instances[name] = inst
            self._take_statics(inst)
        return self._operation(
            self.zone_scope(),
            "insert",
            self.links.instance(name),
            inst.id,
            lambda: self._create(inst),
            request_id,
        )

    def _access_configs(self, given: list[dict[str, Any]]) -> list[AccessConfig]:
        if len(given) > 1:
            raise invalid("At most one access config currently supported.")
        out = []
        for c in given:
            if (c.get("type") or "ONE_TO_ONE_NAT") != "ONE_TO_ONE_NAT":
                raise invalid(f"Invalid value for field 'accessConfigs.type': '{c.get('type')}'")
            nat = c.get("natIP")
            if nat:
                self._reserved(str(nat))
            out.append(
                AccessConfig(str(c.get("name") or NAT), str(nat) if nat else None, static=bool(nat))
            )
        return out

    def _reserved(self, ip: str) -> Address:
        """The static address `ip` is, free to use (or a 400 as Google gives)."""
        found = next((a for a in self.addresses.values() if a.address == ip), None)
        if found is None:
            raise invalid(
                f"Invalid value for field 'resource.natIP': '{ip}'. The specified "
                "external IP address is not reserved in the region."
            )
        if found.users:
            raise invalid(f"The IP address '{ip}' is already being used by another resource.")
        return found

    def _take_statics(self, inst: Instance) -> None:
        for c in inst.access_configs:
            if c.static and c.nat_ip:
                self._reserved(c.nat_ip).users = [self.links.instance(inst.name)]

    def _ephemeral(self, inst: Instance) -> None:
        """An ephemeral external IP for each access config without one (the network gives
        them: its `public`)."""
        if not self.catalog.network(inst.network).public:
            return
        for c in inst.access_configs:
            if c.nat_ip is None:
                try:
                    c.nat_ip = str(self.pool.take())
                except PoolExhausted:
                    raise OperationFailed(
                        "IP_SPACE_EXHAUSTED",
                        f"no external IP address left in region {self.links.region}",
                        503,
                    ) from None

    def _release_ephemeral(self, inst: Instance) -> None:
        for c in inst.access_configs:
            if c.nat_ip and not c.static:
                self.pool.give_back(ipaddress.IPv4Address(c.nat_ip))
                c.nat_ip = None

    def _free(self, inst: Instance) -> None:
        """What a deleted (or never created) instance held goes back."""
        self._release_ephemeral(inst)
        link = self.links.instance(inst.name)
        for a in self.addresses.values():
            if link in a.users:
                a.users.remove(link)
        self.private[inst.network].give_back(ipaddress.IPv4Address(inst.network_ip))
        self.instances.pop(inst.name, None)

    def _create(self, inst: Instance) -> None:
        with inst.busy:
            with self.lock:
                limit = self.spec.quotas.instances
                others = [i for i in self.instances.values() if i is not inst]
                if limit is not None and len(others) >= limit:
                    self._free(inst)
                    raise OperationFailed(
                        "QUOTA_EXCEEDED",
                        f"Quota 'INSTANCES' exceeded.  "
                        f"Limit: {limit:.1f} in region {self.links.region}.",
                        403,
                    )
                try:
                    self._ephemeral(inst)
                except OperationFailed:
                    self._free(inst)
                    raise
                inst.status = "STAGING"
            try:
                self._boot(inst)
            except Exception as e:
                self.ctx.runtime.call(self.ctx.runtime.halt(inst.node_id, wipe=True))
                with self.lock:
                    self._free(inst)
                raise OperationFailed(
                    "ZONE_RESOURCE_POOL_EXHAUSTED",
                    f"The zone 'projects/"
                    f"{self.project}/zones/{self.links.zone}' does not have "
                    f"enough resources available (lab: {e})",
                    503,
                ) from None
            self.ctx.ledger.created(self.spec.name, "server", inst.name, inst.image.name)
            with self.lock:
                inst.status, inst.last_start = "RUNNING", now()
        self.sync()

    def _boot(self, inst: Instance) -> None:
        """Boot the instance's node (its disk kept from an earlier boot), then the guest
        environment's accounts."""
        rt = self.ctx.runtime
        net_spec = self.catalog.network(inst.network)
        behaviour = self.spec.behaviour(inst.image)
        if behaviour.password_auth and self._password_hash is None:
            self._password_hash = password_hash(self.ctx.dir / "login-password")
        first = FirstBoot(
            hostname=inst.name,
            behaviour=behaviour,
            private_ip=inst.network_ip,
            password_hash=self._password_hash if behaviour.password_auth else None,
            hide=(str(rt.run_dir),),
        )
        net = rt.call(rt.network(f"{self.spec.name}/{inst.network}", net_spec.cidr))
        node = rt.call(
            rt.boot(
                inst.node_id, self.spec.name, net, ipaddress.IPv4Address(inst.network_ip), first
            )
        )
        try:
            self._guest(inst, node.box.init_pid())
        except Exception:
            rt.call(rt.halt(inst.node_id, wipe=False))
            raise

    def _guest(self, inst: Instance, init_pid: int | None = None) -> None:
        """What Google's guest agent makes of the instance's metadata, on its node."""
        if init_pid is None:
            node = self.ctx.runtime.nodes.get(inst.node_id)
            init_pid = node.box.init_pid() if node is not None else None
        if init_pid is None:
            return  # not running: the agent applies the metadata at the next boot
        project = self.catalog.project_metadata()

        def value(items: list[dict[str, str]], key: str) -> str | None:
            return next((i.get("value", "") for i in items if i.get("key") == key), None)

        with self.lock:
            items = [dict(i) for i in inst.metadata]
        on = guest.os_login(
            value(items, "enable-oslogin"),
            value(project, "enable-oslogin"),
            self.options.os_login_enforced,
        )
        entries = [value(items, "ssh-keys")]
        if not guest.truthy(value(items, "block-project-ssh-keys")):
            entries.append(value(project, "ssh-keys"))
        wanted = {} if on else guest.accounts(entries)
        guest.apply(init_pid, wanted, self.options.deprovision_remove)

    def delete_instance(self, name: str, request_id: str | None) -> Operation:
        with self.lock:
            inst = self.instance(name)
            inst.status = "STOPPING"

        def work() -> None:
            with inst.busy:
                self.ctx.runtime.call(self.ctx.runtime.halt(inst.node_id, wipe=True))
                with self.lock:
                    self._free(inst)
                self.ctx.ledger.released(self.spec.name, "server", inst.name)
            self.sync()

        return self._operation(
            self.zone_scope(), "delete", self.links.instance(name), inst.id, work, request_id
        )

    def stop_instance(self, name: str, request_id: str | None) -> Operation:
        inst = self.instance(name)

        def work() -> None:
            with inst.busy:
                if inst.status == "TERMINATED":
                    return
                with self.lock:
                    inst.status = "STOPPING"
                self.ctx.runtime.call(self.ctx.runtime.halt(inst.node_id, wipe=False))
                with self.lock:
                    self._release_ephemeral(inst)  # an ephemeral IP does not outlive a stop
                    inst.status = "TERMINATED"
            self.sync()

        return self._operation(
            self.zone_scope(), "stop", self.links.instance(name), inst.id, work, request_id
        )

    def start_instance(self, name: str, request_id: str | None) -> Operation:
        inst = self.instance(name)

        def work() -> None:
            with inst.busy:
                if inst.status == "RUNNING":
                    return
                with self.lock:
                    self._ephemeral(inst)
                    inst.status = "STAGING"
                try:
                    self._boot(inst)
                except Exception as e:
                    with self.lock:
                        self._release_ephemeral(inst)
                        inst.status = "TERMINATED"
                    raise OperationFailed(
                        "ZONE_RESOURCE_POOL_EXHAUSTED", f"lab: {e}", 503
                    ) from None
                with self.lock:
                    inst.status, inst.last_start = "RUNNING", now()
            self.sync()

        return self._operation(
            self.zone_scope(), "start", self.links.instance(name), inst.id, work, request_id
        )

    def set_metadata(self, name: str, body: dict[str, Any], request_id: str | None) -> Operation:
        with self.lock:
            inst = self.instance(name)
            _fresh(body.get("fingerprint"), fingerprint(inst.metadata), "metadata")
            items = _items(body)
            self._check_os_login(items)
            inst.metadata = items

        def work() -> None:
            with inst.busy:
                if inst.status == "RUNNING":
                    self._guest(inst)

        return self._operation(
            self.zone_scope(), "setMetadata", self.links.instance(name), inst.id, work, request_id
        )

    def set_labels(self, name: str, body: dict[str, Any], request_id: str | None) -> Operation:
        with self.lock:
            inst = self.instance(name)
            _fresh(body.get("labelFingerprint"), fingerprint(inst.labels), "labels")
            inst.labels = _labels(body.get("labels") or {})
        return self._operation(
            self.zone_scope(),
            "setLabels",
            self.links.instance(name),
            inst.id,
            lambda: None,
            request_id,
        )

    def set_tags(self, name: str, body: dict[str, Any], request_id: str | None) -> Operation:
        with self.lock:
            inst = self.instance(name)
            _fresh(body.get("fingerprint"), fingerprint(inst.tags), "tags")
            tags = [str(t) for t in body.get("items") or []]
            for t in tags:
                if not re.fullmatch(NAME, t):
                    raise invalid(f"Invalid value for field 'resource.tags.items[]': '{t}'.")
            inst.tags = list(dict.fromkeys(tags))
        return self._operation(
            self.zone_scope(),
            "setTags",
            self.links.instance(name),
            inst.id,
            self.sync_filters,
            request_id,
        )

    def add_access_config(
        self, name: str, nic: str, body: dict[str, Any], request_id: str | None
    ) -> Operation:
        with self.lock:
            inst = self.instance(name)
            _nic0(nic)
            if inst.access_configs:
                raise invalid("At most one access config currently supported.")
            (config,) = self._access_configs([body])
            inst.access_configs = [config]
            self._take_statics(inst)

        def work() -> None:
            with inst.busy:
                if inst.status == "RUNNING":
                    with self.lock:
                        self._ephemeral(inst)
            self.sync()

        return self._operation(
            self.zone_scope(),
            "addAccessConfig",
            self.links.instance(name),
            inst.id,
            work,
            request_id,
        )

    def delete_access_config(
        self, name: str, nic: str, config: str, request_id: str | None
    ) -> Operation:
        with self.lock:
            inst = self.instance(name)
            _nic0(nic)
            found = next((c for c in inst.access_configs if c.name == config), None)
            if found is None:
                raise invalid(
                    f"Invalid value for field 'accessConfig': '{config}'. No access "
                    "config with that name."
                )
            inst.access_configs.remove(found)
            if found.nat_ip and found.static:
                for a in self.addresses.values():
                    if a.address == found.nat_ip:
                        a.users = []
            elif found.nat_ip:
                self.pool.give_back(ipaddress.IPv4Address(found.nat_ip))
        return self._operation(
            self.zone_scope(),
            "deleteAccessConfig",
            self.links.instance(name),
            inst.id,
            self.sync,
            request_id,
        )

    # -- static addresses -------------------------------------------------------------

    def address(self, name: str) -> Address:
        return self._found(self.addresses, f"regions/{self.links.region}/addresses", name)

    def insert_address(self, body: dict[str, Any], request_id: str | None) -> Operation:
        with self.lock:
            if (first := self._replayed(request_id)) is not None:
                return first
            name = self._new_name(body, self.addresses, f"regions/{self.links.region}/addresses")
            limit = self.spec.quotas.floating_ips
            if limit is not None and len(self.addresses) >= limit:
                text = (
                    f"Quota 'STATIC_ADDRESSES' exceeded.  Limit: {limit:.1f} in region "
                    f"{self.links.region}."
                )
                raise GceError(403, "quotaExceeded", text)
            wanted = body.get("address")
            holder = self._promoted(str(wanted)) if wanted else None
            if holder is None:
                try:
                    ip = self.pool.take(ipaddress.IPv4Address(wanted) if wanted else None)
                except (PoolExhausted, ValueError) as e:
                    raise invalid(
                        f"Invalid value for field 'resource.address': '{wanted or ''}'. {e}"
                    ) from None
                wanted = str(ip)
            address = Address(
                name=name,
                address=str(wanted),
                description=str(body.get("description") or ""),
                labels=_labels(body.get("labels") or {}),
                users=[self.links.instance(holder.name)] if holder else [],
            )
            self.addresses[name] = address
        self.ctx.ledger.created(self.spec.name, "address", name, address.address)
        return self._operation(
            self.region_scope(),
            "insert",
            self.links.address(name),
            address.id,
            lambda: None,
            request_id,
        )

    def _promoted(self, ip: str) -> Instance | None:
        """An instance whose ephemeral IP `ip` is: reserving it makes it static, as Google
        does (it stays on the instance)."""
        for inst in self.instances.values():
            for c in inst.access_configs:
                if c.nat_ip == ip and not c.static:
                    c.static = True
                    return inst
        return None

    def delete_address(self, name: str, request_id: str | None) -> Operation:
        with self.lock:
            a = self.address(name)
            if a.users:
                raise GceError(
                    400,
                    "resourceInUseByAnotherResource",
                    f"The address resource "
                    f"'projects/{self.project}/regions/{self.links.region}/addresses/"
                    f"{name}' is already being used by '{a.users[0]}'",
                )
            del self.addresses[name]
            self.pool.give_back(ipaddress.IPv4Address(a.address))
        self.ctx.ledger.released(self.spec.name, "address", name)
        return self._operation(
            self.region_scope(), "delete", self.links.address(name), a.id, lambda: None, request_id
        )

    # -- firewall rules -------------------------------------------------------------

    def firewall(self, name: str) -> Firewall:
        return self._found(self.firewalls, "global/firewalls", name)

    def insert_firewall(self, body: dict[str, Any], request_id: str | None) -> Operation:
        with self.lock:
            if (first := self._replayed(request_id)) is not None:
                return first
            name = self._new_name(body, self.firewalls, "global/firewalls")
            if body.get("denied") or (body.get("direction") or "INGRESS") != "INGRESS":
                raise invalid("The lab's firewall rules are ingress allow rules.")
            allowed = list(body.get("allowed") or [])
            if not allowed:
                raise invalid(
                    "Invalid value for field 'resource.allowed': ''. Must specify at "
                    "least one allowed or denied rule."
                )
            net = self.catalog.network_of(str(body.get("network") or "global/networks/default"))
            ranges = [str(r) for r in body.get("sourceRanges") or []]
            for r in ranges:
                try:
                    ipaddress.ip_network(r, strict=False)
                except ValueError:
                    raise invalid(
                        f"Invalid value for field 'resource.sourceRanges[]': '{r}'. "
                        "Must be a CIDR address range."
                    ) from None
            sources = [str(t) for t in body.get("sourceTags") or []]
            rule = Firewall(
                name=name,
                network=net.name,
                allowed=allowed,
                source_ranges=ranges or ([] if sources else ["0.0.0.0/0"]),
                source_tags=sources,
                target_tags=[str(t) for t in body.get("targetTags") or []],
                description=str(body.get("description") or ""),
                priority=int(body.get("priority") or 1000),
                disabled=bool(body.get("disabled")),
            )
            self.firewalls[name] = rule
        self.ctx.ledger.created(self.spec.name, "firewall", name, net.name)
        return self._operation(
            "global", "insert", self.links.firewall(name), rule.id, self.sync_filters, request_id
        )

    def delete_firewall(self, name: str, request_id: str | None) -> Operation:
        with self.lock:
            rule = self.firewall(name)
            del self.firewalls[name]
        self.ctx.ledger.released(self.spec.name, "firewall", name)
        return self._operation(
            "global", "delete", self.links.firewall(name), rule.id, self.sync_filters, request_id
        )

    # -- the lab's side: addresses forwarded, networks filtered ---------------------

    def running(self) -> list[Instance]:
        nodes = self.ctx.runtime.nodes
        with self.lock:
            return [
                i for i in self.instances.values() if i.status == "RUNNING" and i.node_id in nodes
            ]

    def sync(self) -> None:
        with self._syncing:
            self.ctx.runtime.call(self._publish())
            self._filter()

    def sync_filters(self) -> None:
        with self._syncing:
            self._filter()

    async def _publish(self) -> None:
        """Forward exactly the external IPs the API shows on running instances."""
        want: dict[ipaddress.IPv4Address, str] = {}
        for inst in self.running():
            for c in inst.access_configs:
                if c.nat_ip:
                    want[ipaddress.IPv4Address(c.nat_ip)] = inst.node_id
        rt = self.ctx.runtime
        for ip in list(self.published):
            if want.get(ip) != self.published[ip]:
                await rt.unpublish(ip)
                del self.published[ip]
        for ip, node_id in want.items():
            if ip not in self.published:
                await rt.publish(ip, self.spec.public.ports, node_id, self.guard)
                self.published[ip] = node_id

    def _filter(self) -> None:
        """Each network's bridge admits between nodes what its firewall rules admit."""
        if not self.spec.firewall.enforced:
            return
        running = self.running()
        with self.lock:
            rules = list(self.firewalls.values())
        for name in self.catalog.networks:
            net = self.ctx.runtime.networks.get(f"{self.spec.name}/{name}")
            if net is not None:
                here = [i for i in running if i.network == name]
                net.admit_only(firewall.admitted(rules, here))


class GceFirewall:
    """The instance's firewall rules as the API holds them (asked from the lab's loop)."""

    def __init__(self, project: Project) -> None:
        self.project = project

    async def admits(self, node_id: str, port: int, source: ipaddress.IPv4Address) -> bool:
        p = self.project
        inst = next((i for i in list(p.instances.values()) if i.node_id == node_id), None)
        return inst is not None and firewall.admits(list(p.firewalls.values()), inst, port, source)


def _items(metadata: Any) -> list[dict[str, str]]:
    items = (metadata or {}).get("items") or [] if isinstance(metadata, dict) else []
    out: list[dict[str, str]] = []
    for i in items:
        key = str(i.get("key") or "")
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", key):
            raise invalid(f"Invalid value for field 'resource.metadata.items[].key': '{key}'.")
        out.append({"key": key, "value": str(i.get("value") or "")})
    if sum(len(i["value"]) for i in out) > 512 * 1024:
        raise invalid("Metadata exceeds 512 KB.")
    return out


def _labels(labels: dict[str, Any]) -> dict[str, str]:
    for k, v in labels.items():
        if not LABEL_KEY.match(str(k)) or not LABEL_VALUE.match(str(v)):
            raise invalid(
                f"Invalid value for field 'labels': '{k}'. Label keys and values "
                "are lower case letters, digits, '_' and '-'."
            )
    return {str(k): str(v) for k, v in labels.items()}


def _fresh(given: Any, current: str, what: str) -> None:
    """A change names the fingerprint it read: a stale one fails, as on Google."""
    if given is None:
        raise invalid(f"Invalid value for field '{what}.fingerprint': ''. Required.")
    if given != current:
        raise GceError(
            412,
            "conditionNotMet",
            f"Supplied fingerprint does not match current {what} fingerprint.",
        )


def _nic0(nic: str) -> None:
    if nic != "nic0":
        raise invalid(
            f"Invalid value for field 'networkInterface': '{nic}'. No such network interface."
        )
