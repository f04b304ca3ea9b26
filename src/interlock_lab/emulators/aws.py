"""The lab's EC2: moto's server in-process, each instance a sandbox node.

moto keeps the API state; a few class-level hooks on its EC2 backend make that
state real: RunInstances boots nodes, Stop/Start/Terminate stop and start them,
public and elastic IPs come from the site's loopback pool and are forwarded
into the node. Three moto behaviours are corrected to match AWS: private IPs
come from the default subnet, an elastic IP survives stop/start, and
re-association moves the address (the old instance gets a fresh public IP).
Security groups are moto's: the lab's forwarder asks them (`Ec2Firewall`) about every
new connection to a public address, so a port opens and closes as the API says.

A site's lock guards moto's state (moto is not thread-safe: a describe racing a launch
answered with a broken body at 1,000 nodes). Every call holds it, except RunInstances
and the lifecycle calls, which hold it for moto's bookkeeping only and boot outside it
(launches boot side by side, pending until reachable). A call updates
the addresses and filters of its own instances only, so its cost does not grow with the
number of nodes.

Each aws site has its own moto account id (set per request by a middleware), so
several aws sites can share one process without sharing state.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import os
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

import moto.settings
import yaml
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import EC2Backend
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ec2.models.instances import Instance
from moto.ec2.models.security_groups import SecurityGroupRule
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.server import ThreadedMotoServer

from interlock import config
from interlock_lab import labdir
from interlock_lab.emulators.base import SiteContext, password_hash, stable_digits
from interlock_lab.emulators.faults import FaultPicker
from interlock_lab.fabric.ipam import AddressPool, PoolExhausted
from interlock_lab.fabric.network import Admit
from interlock_lab.node.rootfs import FirstBoot

ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
    "<Message>{msg}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"
)
# Calls whose hooks take the site's lock themselves, around moto's bookkeeping only:
# they wait for boots, which must not hold it.
LOCKS_ITSELF = frozenset({"RunInstances", "TerminateInstances", "StopInstances", "StartInstances"})
MOTO_NO_TOKEN = "ABCDE"  # the ClientToken moto's RunInstances hands on when none was sent
ACCESS_KEY = "interlock-lab"  # moto accepts any credentials; these are not secrets
# RunInstances booting at once, per site: boots beyond a few only queue on the lab's loop,
# where each would wait for its node's init against the sandbox's ready timeout.
BOOTS_AT_ONCE = 8

_sites: dict[str, AwsSite] = {}  # by moto account id
_patched = False


def _site(backend: Any) -> AwsSite | None:
    site = _sites.get(backend.account_id)
    if site is None or backend.region_name != site.spec.region:
        return None
    return site


class AwsSite:
    kind = "aws"

    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.account_id = stable_digits(f"interlock-lab/{self.spec.name}", 12)
        self.pool = AddressPool(self.spec.public.pool)
        self.faults = FaultPicker(self.spec.faults, self.spec.seed)
        self.lock = threading.RLock()
        self.server: ThreadedMotoServer | None = None
        self.url = ""
        self._password_hash: str | None = None
        self._published: dict[ipaddress.IPv4Address, str] = {}
        self._public_of: dict[str, set[ipaddress.IPv4Address]] = {}  # node -> its published IPs
        self._filtered: dict[str, tuple[str, ipaddress.IPv4Address]] = {}  # node -> net, address
        # Launched instances whose nodes boot outside the lock; set once they are settled.
        self._booting: dict[str, threading.Event] = {}
        self.boots = threading.BoundedSemaphore(BOOTS_AT_ONCE)
        self.by_token: dict[str, Any] = {}  # RunInstances' ClientToken → its reservation
        # Instances by id: moto's get_instance copies every reservation to find one, and the
        # firewall asks once per connection (O(nodes) each, on the lab's loop).
        self.instances: dict[str, Any] = {}
        self.guard: Ec2Firewall | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        _install_hooks()
        _sites[self.account_id] = self
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        wsgi = self.server._server
        assert wsgi is not None, "moto's server thread did not start"
        wsgi.app = _Middleware(wsgi.app, self)
        self.url = f"http://127.0.0.1:{wsgi.server_port}"
        backend = self.backend()
        if not self.spec.networks[0].public:
            for subnet in backend.get_default_subnets().values():
                subnet.map_public_ip_on_launch = False
        if self.spec.default_open:  # a cloud whose default group admits everything
            for vpc in list(backend.vpcs):
                group = backend.get_default_security_group(vpc)
                everything = {"CidrIp": "0.0.0.0/0"}
                rule = SecurityGroupRule(backend, "-1", group.id, None, None, everything)
                rule.is_egress = False
                group.add_ingress_rule(rule)
        self.guard = Ec2Firewall(self) if self.spec.firewall.enforced else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        _sites.pop(self.account_id, None)

    def backend(self) -> Any:
        from moto.backends import get_backend

        return get_backend("ec2")[self.account_id][self.spec.region]

    def info(self) -> dict[str, Any]:
        return {
            "endpoint": self.url,
            "region": self.spec.region,
            "account_id": self.account_id,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": ACCESS_KEY,
            "password_file": str(self._secret_file()),
            "api_calls": self.faults.counted(),  # what clients asked of EC2, by action
        }

    def client_config(self) -> config.AwsSite:
        # Credentials go through botocore's own loader: a profile in files of ours.
        self.ctx.dir.mkdir(parents=True, exist_ok=True)
        settings, creds = self.ctx.dir / "aws-config", self.ctx.dir / "aws-credentials"
        profile = f"lab-{self.spec.name}"
        settings.write_text(f"[profile {profile}]\nregion = {self.spec.region}\n")
        keys = f"aws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {ACCESS_KEY}\n"
        labdir.write_secret(creds, f"[{profile}]\n{keys}")
        return config.AwsSite(
            provider="aws",
            region=self.spec.region,
            endpoint=self.url,
            aws_profile=profile,
            aws_config_file=settings,
            aws_credentials_file=creds,
        )

    # -- nodes -------------------------------------------------------------

    def _secret_file(self) -> Any:
        return self.ctx.dir / "login-password"

    def _first_boot(self, instance: Any) -> FirstBoot:
        image = self.spec.image(instance.image_id)
        behaviour = self.spec.behaviour(image)
        keys: tuple[str, ...] = ()
        if instance.key_name:
            pair = self.backend().key_pairs.get(instance.key_name)
            if pair is not None:
                keys = (_openssh(pair.material_public),)
        keys += _user_data_keys(instance.user_data)
        if behaviour.password_auth and self._password_hash is None:
            self._password_hash = password_hash(self._secret_file())
        ip = instance.private_ip_address
        return FirstBoot(
            hostname="ip-" + ip.replace(".", "-"),
            behaviour=behaviour,
            private_ip=ip,
            instance_keys=keys,
            password_hash=self._password_hash if behaviour.password_auth else None,
            hide=(str(self.ctx.runtime.run_dir),),
        )

    async def _boot(self, instances: Iterable[Any]) -> None:
        rt = self.ctx.runtime
        vpc = self.backend().vpcs
        boots = []
        for inst in instances:
            cidr = ipaddress.IPv4Network(vpc[inst.vpc_id].cidr_block)
            net = await rt.network(f"{self.spec.name}/{inst.vpc_id}", cidr)
            boots.append(
                rt.boot(
                    inst.id,
                    self.spec.name,
                    net,
                    ipaddress.IPv4Address(inst.private_ip_address),
                    self._first_boot(inst),
                )
            )
        results = await asyncio.gather(*boots, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    def _live(self, inst: Any) -> bool:
        """Booted and not stopped: running, or pending while its launch is settled."""
        return _up(inst) and inst.id in self.ctx.runtime.nodes

    def _network(self, inst: Any) -> str:
        return f"{self.spec.name}/{inst.vpc_id}"

    async def _sync_public(self, instances: list[Any]) -> None:
        """Forward exactly the public IPs moto shows on `instances` while live (a call
        changes the addresses of its own instances only: the others are left as they are)."""
        want: dict[ipaddress.IPv4Address, str] = {}
        for inst in instances:
            if self._live(inst):
                for nic in inst.nics.values():
                    if nic.public_ip:
                        want[ipaddress.IPv4Address(nic.public_ip)] = inst.id
        # What these had, and what they take from another.
        stale = {ip for i in instances for ip in self._public_of.get(i.id, ())}
        stale |= want.keys() & self._published.keys()
        rt = self.ctx.runtime
        for ip in stale:
            if want.get(ip) != self._published[ip]:
                await rt.unpublish(ip)
                self._unrecord(ip)
        for ip, node_id in want.items():
            if ip not in self._published:
                await rt.publish(ip, self.spec.public.ports, node_id, self.guard)
                self._published[ip] = node_id
                self._public_of.setdefault(node_id, set()).add(ip)

    def _unrecord(self, ip: ipaddress.IPv4Address) -> None:
        node_id = self._published.pop(ip)
        ips = self._public_of.get(node_id, set())
        ips.discard(ip)
        if not ips:
            self._public_of.pop(node_id, None)

    def sync(self, instances: list[Any]) -> None:
        """Public addresses and filters of `instances` as moto says."""
        self.ctx.runtime.call(self._sync_public(instances))
        self._filter(instances)

    def sync_filters(self) -> None:
        """Each VPC's lab network filtered as its instances' security groups say: a rule
        from a CIDR admits it, a rule from a group admits that group's members."""
        if not self.spec.firewall.enforced:
            return
        rt = self.ctx.runtime
        live = [i for i in list(self.backend().all_instances()) if self._live(i)]
        filtered: dict[str, tuple[str, ipaddress.IPv4Address]] = {}
        for key, net in list(rt.networks.items()):
            if not key.startswith(f"{self.spec.name}/"):
                continue
            admitted: dict[ipaddress.IPv4Address, list[Admit]] = {}
            members: dict[str, list[ipaddress.IPv4Address]] = {}
            for i in (i for i in live if self._network(i) == key):
                address = ipaddress.IPv4Address(i.private_ip_address)
                admitted[address] = _admits(i)
                for g in _groups(i):
                    members.setdefault(g.id, []).append(address)
                filtered[i.id] = (key, address)
            net.admit_only(admitted, members)
        self._filtered = filtered

    def _filter(self, instances: list[Any]) -> None:
        """The filters of `instances` alone: a group's members are a set in their network's
        table, so joining or leaving one is an element, whatever the group's size."""
        if not self.spec.firewall.enforced:
            return
        rt = self.ctx.runtime
        for inst in instances:
            was = self._filtered.pop(inst.id, None)
            now = None
            if self._live(inst):
                now = (self._network(inst), ipaddress.IPv4Address(inst.private_ip_address))
            if was is not None and was != now and was[0] in rt.networks:
                rt.networks[was[0]].unguard(was[1])
            if now is not None and now[0] in rt.networks:
                groups = [g.id for g in _groups(inst)]
                rt.networks[now[0]].guard(now[1], _admits(inst), groups)
                self._filtered[inst.id] = now

    # RunInstances: moto's bookkeeping under the lock, the boot outside it, then settled.

    def launching(self, instances: list[Any]) -> None:
        """Booting outside the lock (pending since made, see `new_instance`) until
        `launched`. Lifecycle calls on them wait till then (see `settled`)."""
        for inst in instances:
            self._booting[inst.id] = threading.Event()
            self.instances[inst.id] = inst

    def launched(self, instances: list[Any], booted: bool) -> None:
        """Booted: published and filtered, then running. Either way, no longer waited for."""
        try:
            self.sync(instances)  # failed ones (terminated) leave no address behind
            for inst in instances:
                if booted and inst.state == "pending":
                    inst._state.name, inst._state.code = "running", 16
        finally:
            for inst in instances:
                self._booting.pop(inst.id).set()

    @contextmanager
    def settled(self, ids: Iterable[str]) -> Iterator[None]:
        """The site's lock, taken when none of `ids` is still booting outside it (a call
        on an instance during its boot is answered once the boot is over)."""
        ids = list(ids)
        while True:
            with self.lock:
                booting = [self._booting[i] for i in ids if i in self._booting]
                if not booting:
                    yield
                    return
            for done in booting:
                done.wait()

    # Reactions to moto's lifecycle calls; each gets [(instance, previous state)].

    def terminated(self, changed: list[Any]) -> None:
        for inst, previous in changed:
            self.ctx.runtime.call(self.ctx.runtime.halt(inst.id, wipe=True))
            if previous.name != "terminated":
                self.ctx.ledger.released(self.spec.name, "server", inst.id)

    def stopped(self, changed: list[Any]) -> None:
        for inst, _ in changed:
            self.ctx.runtime.call(self.ctx.runtime.halt(inst.id, wipe=False))

    def started(self, changed: list[Any]) -> None:
        self.ctx.runtime.call(self._boot([inst for inst, _ in changed]))


class Ec2Firewall:
    """The instance's security groups as moto holds them (its primary interface's): a
    connection is admitted where an inbound rule covers its port and source address.
    Rules naming a group as source admit its members, never the host."""

    def __init__(self, site: AwsSite) -> None:
        self.site = site

    async def admits(self, node_id: str, port: int, source: ipaddress.IPv4Address) -> bool:
        inst = self.site.instances.get(node_id) or self.site.backend().get_instance(node_id)
        groups = _groups(inst)
        return any(_covers(r, port, source) for g in groups for r in list(g.ingress_rules))


def _groups(inst: Any) -> list[Any]:
    """An instance's security groups: its primary interface's."""
    nics = sorted(inst.nics.items())
    return list(nics[0][1].group_set) if nics else list(inst.security_groups)


def _admits(inst: Any) -> list[Admit]:
    """What the instance's groups admit between nodes."""
    return [a for g in _groups(inst) for r in list(g.ingress_rules) if (a := _admit(r)) is not None]


def _admit(rule: Any) -> Admit | None:
    if rule.ip_protocol not in ("-1", "tcp"):
        return None
    ports = (rule.from_port, rule.to_port) if rule.ip_protocol == "tcp" else None
    cidr = (rule.ip_range or {}).get("CidrIp")
    if cidr:
        return Admit(ports, (ipaddress.IPv4Network(cidr, strict=False),))
    group = (rule.source_group or {}).get("GroupId")
    return Admit(ports, (), group) if group else None  # its members: a set of the network's


def _covers(rule: Any, port: int, source: ipaddress.IPv4Address) -> bool:
    if rule.ip_protocol not in ("-1", "tcp"):
        return False
    if rule.ip_protocol == "tcp" and not (rule.from_port <= port <= rule.to_port):
        return False
    cidr = (rule.ip_range or {}).get("CidrIp")
    return bool(cidr) and source in ipaddress.IPv4Network(cidr, strict=False)


def _user_data_keys(user_data: Any) -> tuple[str, ...]:
    """The keys a cloud-config in the instance's user data gives the default account, as
    cloud-init reads them; user data of any other kind, or broken, gives none (cloud-init
    logs it and goes on)."""
    if user_data is None:
        return ()
    try:
        text = user_data.decode()
        if not text.startswith("#cloud-config"):
            return ()
        found = (yaml.safe_load(text) or {}).get("ssh_authorized_keys") or []
    except (ValueError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return ()
    return tuple(k.strip() for k in found if isinstance(k, str) and k.strip())


def _openssh(material: bytes | str) -> str:
    text = material.decode() if isinstance(material, bytes) else material
    return " ".join(text.split()[:2])


# -- moto hooks -----------------------------------------------------------------


def _hook(cls: Any, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        orig = getattr(cls, name)
        setattr(cls, name, lambda self, *a, **kw: fn(orig, self, *a, **kw))
        return fn

    return wrap


def _install_hooks() -> None:
    global _patched
    if _patched:
        return
    _patched = True
    # Unknown AMIs, instance types and key names fail as they do on AWS.
    moto.settings.ENABLE_AMI_VALIDATION = True
    moto.settings.ENABLE_KEYPAIR_VALIDATION = True
    moto.settings.EC2_ENABLE_INSTANCE_TYPE_VALIDATION = True

    @_hook(TaggedEC2Resource, "get_tags")
    def own_tags(orig: Any, self: Any) -> list[dict[str, str]]:
        # moto finds one resource's tags by matching every tag in the region against its
        # id: filtering a thousand instances by tag took seconds per call. Same answer,
        # looked up by id.
        if not self.id:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
        own = self.ec2_backend.tags.get(self.id, {})
        return [
            {"resource_id": self.id, "key": k, "value": v, "resource_type": kind}
            for k, v in own.items()
        ]

    @_hook(AmiBackend, "_load_amis")
    def load_amis(orig: Any, self: Any) -> None:
        orig(self)
        site = _site(self)
        if site is None:
            return
        for image in site.spec.images:
            self.amis[image.id] = Ami(
                self,
                image.id,
                name=image.name,
                description=f"{image.os} {image.version} ({image.arch})",
                owner_id=stable_digits(image.os, 12),
                architecture=image.arch,
                virtualization_type="hvm",
                root_device_type="ebs",
                root_device_name="/dev/sda1",
                public=True,
                tags=dict(image.properties),
            )

    @_hook(Instance, "__init__")
    def new_instance(orig: Any, self: Any, *a: Any, **kw: Any) -> None:
        orig(self, *a, **kw)
        if _site(self.ec2_backend) is not None:
            # Pending, as AWS shows a launch, until booted and reachable (`AwsSite.launched`):
            # DescribeInstances, which takes no lock, never shows a node running unreachable.
            self._state.name, self._state.code = "pending", 0

    @_hook(NetworkInterface, "check_auto_public_ip")
    def check_auto_public_ip(orig: Any, self: Any) -> None:
        site = _site(self.ec2_backend)
        if site is None:
            return orig(self)  # type: ignore[no-any-return]
        if str(self.public_ip_auto_assign).lower() != "true":
            return None
        eip = next((a for a in self.ec2_backend.addresses if a.eni is self), None)
        if eip is not None:
            self.public_ip = eip.public_ip
        elif self.public_ip is None:
            try:
                self.public_ip = str(site.pool.take())
            except PoolExhausted:
                raise EC2ClientError(
                    "AddressLimitExceeded", "public address pool exhausted"
                ) from None
        return None

    @_hook(NetworkInterface, "stop")
    def eni_stop(orig: Any, self: Any) -> None:
        site = _site(self.ec2_backend)
        if site is None:
            return orig(self)  # type: ignore[no-any-return]
        eip = next((a for a in self.ec2_backend.addresses if a.eni is self), None)
        if eip is None and self.public_ip:
            site.pool.give_back(ipaddress.IPv4Address(self.public_ip))
            self.public_ip = None
        return None

    @_hook(EC2Backend, "run_instances")
    def run_instances(orig: Any, self: Any, image_id: str, count: int, *a: Any, **kw: Any) -> Any:
        site = _site(self)
        if site is None:
            raise EC2ClientError("UnsupportedOperation", "this lab site serves one region only")
        nics = kw.get("nics") or []
        if not kw.get("subnet_id") and not any(
            "SubnetId" in n or "NetworkInterfaceId" in n for n in nics
        ):
            # AWS launches into the AZ's default subnet; moto would invent a 10.x address.
            subnets = self.get_default_subnets()
            subnet = subnets.get(kw.get("placement") or "") or next(iter(subnets.values()))
            nic0 = next((n for n in nics if int(n.get("DeviceIndex", 0)) == 0), None)
            if nic0 is not None:
                nic0["SubnetId"] = subnet.id
            else:
                kw["subnet_id"] = subnet.id
        token = kw.get("client_token")
        token = None if token == MOTO_NO_TOKEN else token
        with site.lock:  # moto's state is not thread-safe; the boots need no lock
            first = site.by_token.get(token) if token else None
            if first is None:
                reservation = orig(self, image_id, count, *a, **kw)
                instances = list(reservation.instances)
                site.launching(instances)
                if token:
                    site.by_token[token] = reservation
        if first is not None:
            # The same request again (a client's retry): AWS answers with the first run,
            # or its error where it failed (then the token is free for a new run).
            with site.settled(i.id for i in first.instances):
                failed = site.by_token.get(str(token)) is not first
            if failed:
                raise EC2ClientError("InsufficientInstanceCapacity", "lab: the first run failed")
            return first
        try:
            with site.boots:
                site.ctx.runtime.call(site._boot(instances))
        except Exception as e:
            try:
                with site.lock:
                    orig_terminate(self, [i.id for i in instances])
                for i in instances:
                    site.ctx.runtime.call(site.ctx.runtime.halt(i.id, wipe=True))
            finally:
                with site.lock:
                    site.launched(instances, booted=False)
                    if token:
                        site.by_token.pop(token, None)
            raise EC2ClientError("InsufficientInstanceCapacity", f"lab: {e}") from None
        with site.lock:
            for i in instances:
                site.ctx.ledger.created(site.spec.name, "server", i.id, i.image_id)
            site.launched(instances, booted=True)
        return reservation

    orig_terminate = EC2Backend.terminate_instances

    def on_lifecycle(name: str, react: Callable[[AwsSite, list[Any]], None]) -> None:
        @_hook(EC2Backend, name)
        def wrapper(orig: Any, self: Any, ids: list[str]) -> Any:
            site = _site(self)
            if site is None:
                return orig(self, ids)
            with site.settled(ids):
                out = orig(self, ids)  # [(instance, previous state)]
                react(site, out)
                site.sync([inst for inst, _ in out])  # theirs only: O(1) in the site's size
            return out

    on_lifecycle("terminate_instances", AwsSite.terminated)
    on_lifecycle("stop_instances", AwsSite.stopped)
    on_lifecycle("start_instances", AwsSite.started)

    for name in ("create_key_pair", "import_key_pair"):

        @_hook(EC2Backend, name)
        def add_key(orig: Any, self: Any, key_name: str, *a: Any, **kw: Any) -> Any:
            pair = orig(self, key_name, *a, **kw)
            site = _site(self)
            if site is not None:
                site.ctx.ledger.created(site.spec.name, "keypair", key_name)
            return pair

    @_hook(EC2Backend, "delete_key_pair")
    def delete_key(orig: Any, self: Any, key_name: str) -> Any:
        pair = orig(self, key_name)
        site = _site(self)
        if site is not None and pair is not None:
            site.ctx.ledger.released(site.spec.name, "keypair", key_name)
        return pair

    @_hook(EC2Backend, "create_security_group")
    def create_group(orig: Any, self: Any, name: str, *a: Any, **kw: Any) -> Any:
        group = orig(self, name, *a, **kw)
        site = _site(self)
        if site is not None and not group.is_default:
            site.ctx.ledger.created(site.spec.name, "security-group", group.id, name)
        return group

    @_hook(EC2Backend, "delete_security_group")
    def delete_group(orig: Any, self: Any, name: Any = None, group_id: Any = None) -> Any:
        site = _site(self)
        group = self.get_security_group_by_name_or_id(group_id or name)
        rules = [r.id for r in group.ingress_rules] if group is not None else []
        out = orig(self, name=name, group_id=group_id)
        if site is not None and group is not None:
            site.ctx.ledger.released(site.spec.name, "security-group", group.id)
            for rid in rules:
                site.ctx.ledger.released(site.spec.name, "security-group-rule", rid)
        return out

    @_hook(EC2Backend, "authorize_security_group_ingress")
    def authorize(orig: Any, self: Any, *a: Any, **kw: Any) -> Any:
        added, group = orig(self, *a, **kw)
        site = _site(self)
        if site is not None:
            for rule in added:
                site.ctx.ledger.created(site.spec.name, "security-group-rule", rule.id, group.id)
            with site.lock:
                site.sync_filters()
        return added, group

    @_hook(EC2Backend, "revoke_security_group_ingress")
    def revoke(orig: Any, self: Any, group_name_or_id: str, *a: Any, **kw: Any) -> Any:
        group = self.get_security_group_by_name_or_id(group_name_or_id, kw.get("vpc_id"))
        before = {r.id for r in group.ingress_rules} if group is not None else set()
        out = orig(self, group_name_or_id, *a, **kw)
        site = _site(self)
        if site is not None and group is not None:
            for rid in before - {r.id for r in group.ingress_rules}:
                site.ctx.ledger.released(site.spec.name, "security-group-rule", rid)
            with site.lock:
                site.sync_filters()
        return out

    @_hook(EC2Backend, "modify_instance_security_groups")
    def regroup(orig: Any, self: Any, *a: Any, **kw: Any) -> Any:
        out = orig(self, *a, **kw)
        site = _site(self)
        if site is not None:
            with site.lock:
                site.sync_filters()
        return out

    @_hook(EC2Backend, "allocate_address")
    def allocate_address(
        orig: Any, self: Any, domain: str, address: Any = None, tags: Any = None
    ) -> Any:
        site = _site(self)
        if site is None:
            return orig(self, domain, address=address, tags=tags)
        try:
            ip = site.pool.take(ipaddress.IPv4Address(address) if address else None)
        except (PoolExhausted, ValueError) as e:
            raise EC2ClientError("AddressLimitExceeded", str(e)) from None
        eip = orig(self, domain, address=str(ip), tags=tags)
        site.ctx.ledger.created(site.spec.name, "address", eip.allocation_id, str(ip))
        return eip

    @_hook(EC2Backend, "release_address")
    def release_address(
        orig: Any, self: Any, address: Any = None, allocation_id: Any = None
    ) -> Any:
        site = _site(self)
        if site is None:
            return orig(self, address=address, allocation_id=allocation_id)
        eip = _eip(self, address=address, allocation_id=allocation_id)
        ip, allocation = eip.public_ip, eip.allocation_id  # moto clears them on release
        with site.lock:
            holder = _instances(eip.eni)
            out = orig(self, address=address, allocation_id=allocation_id)
            site.pool.give_back(ipaddress.IPv4Address(ip))
            site.ctx.ledger.released(site.spec.name, "address", allocation)
            site.sync(holder)
        return out

    @_hook(EC2Backend, "associate_address")
    def associate_address(orig: Any, self: Any, *a: Any, **kw: Any) -> Any:
        site = _site(self)
        if site is None:
            return orig(self, *a, **kw)
        with site.lock:
            eip = _eip(self, address=kw.get("address"), allocation_id=kw.get("allocation_id"))
            previous = eip.eni
            target = kw.get("eni") or (kw["instance"].nics[0] if kw.get("instance") else None)
            replaced = target.public_ip if target is not None else None
            out = orig(self, *a, **kw)
            if replaced and replaced != eip.public_ip:
                site.pool.give_back(ipaddress.IPv4Address(replaced))  # AWS frees the auto IP
            if previous is not None and previous is not out.eni:
                # moto leaves the address on the old interface; AWS moves it.
                previous.public_ip = None
                if _up(previous.instance):
                    previous.check_auto_public_ip()
            site.sync(_instances(previous, out.eni))  # the address moved between these only
        return out

    @_hook(EC2Backend, "disassociate_address")
    def disassociate_address(orig: Any, self: Any, *a: Any, **kw: Any) -> Any:
        site = _site(self)
        if site is None:
            return orig(self, *a, **kw)
        with site.lock:
            address, association_id = kw.get("address"), kw.get("association_id")
            eip = (
                self.address_by_ip([address])
                if address
                else self.address_by_association([association_id])
            )[0]
            eni = eip.eni
            out = orig(self, *a, **kw)
            if eni is not None:
                if eni.public_ip == eip.public_ip:
                    eni.public_ip = None
                if _up(eni.instance):
                    eni.check_auto_public_ip()
            site.sync(_instances(eni))
        return out


def _up(inst: Any) -> bool:
    """Running, or pending: booting after a launch (see `new_instance`)."""
    return inst is not None and inst.state in ("pending", "running")


def _instances(*enis: Any) -> list[Any]:
    """The instances the interfaces `enis` are attached to (None: none)."""
    found = (e.instance for e in enis if e is not None and e.instance is not None)
    return list({i.id: i for i in found}.values())


def _eip(backend: Any, address: Any = None, allocation_id: Any = None) -> Any:
    if address:
        return backend.address_by_ip([address])[0]
    return backend.address_by_allocation([allocation_id])[0]


class _Middleware:
    """Per request: pins the site's moto account, and injects declared faults."""

    def __init__(self, app: Any, site: AwsSite) -> None:
        self.app = app
        self.site = site

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = self.site.account_id
        if environ.get("REQUEST_METHOD") == "POST":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(size) if size else b""
            environ["wsgi.input"] = io.BytesIO(body)
            action = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
            fault = self.site.faults.pick(action)
            if fault is not None:
                out = ERROR_XML.format(code=fault.error, msg=fault.message, rid=uuid.uuid4())
                data = out.encode()
                start_response(
                    f"{fault.status} Injected",
                    [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))],
                )
                return [data]
            if action not in LOCKS_ITSELF:
                with self.site.lock:  # moto's state is not thread-safe (see the module doc)
                    return self.app(environ, start_response)
        return self.app(environ, start_response)
