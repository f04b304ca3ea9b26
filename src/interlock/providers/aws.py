"""AWS EC2 through boto3."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.session
import yaml
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.parsers import ResponseParserError

from interlock.config import AwsSite
from interlock.errors import ExitCode, InterlockError
from interlock.firewall import Firewall, Ingress, Protocol
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
from interlock.state import Store

T = TypeVar("T")
AUTH = {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch"}
QUOTA = {
    "InsufficientInstanceCapacity",
    "InstanceLimitExceeded",
    "AddressLimitExceeded",
    "VcpuLimitExceeded",
    "InsufficientAddressCapacity",
}
TRANSIENT = {
    "RequestLimitExceeded",
    "Throttling",
    "ServiceUnavailable",
    "InternalError",
    "Unavailable",
}
NODE_TAG = "interlock:node"  # the ownership tag that names the node
DEPLOYMENT_TAG = "interlock:deployment"
PROTOCOLS: dict[str, Protocol] = {"-1": "all", "tcp": "tcp", "6": "tcp", "udp": "udp",
    "17": "udp", "icmp": "icmp", "1": "icmp"}  # fmt: skip
STATES = {"pending": "pending", "running": "running", "stopping": "stopped", "stopped": "stopped"}
CHUNK = 200  # ids per DescribeInstances or DescribeSecurityGroups (filters take 200 values)


def _ingress(group: dict[str, Any]) -> list[Ingress]:
    """A security group's inbound permissions as rules."""
    rules = []
    for p in group.get("IpPermissions", []):
        proto = PROTOCOLS.get(str(p["IpProtocol"]).lower())
        if proto is None:
            continue
        ports = (
            (int(p["FromPort"]), int(p["ToPort"]))
            if proto in ("tcp", "udp") and "FromPort" in p and p["FromPort"] != -1
            else None
        )
        cidrs = tuple(
            ipaddress.IPv4Network(r["CidrIp"], strict=False) for r in p.get("IpRanges", [])
        )
        if cidrs:
            rules.append(Ingress(protocol=proto, ports=ports, sources=cidrs))
        if p.get("UserIdGroupPairs") or p.get("PrefixListIds"):
            rules.append(Ingress(protocol=proto, ports=ports, sources=None))
    return rules


def _firewall(ids: list[str], groups: dict[str, dict[str, Any]]) -> Firewall:
    """The firewall of a node holding the groups `ids` (`groups`: those described, by id)."""
    return Firewall(
        groups=tuple(ids), rules=tuple(r for g in ids if g in groups for r in _ingress(groups[g]))
    )


def _tagged(resource: str, tags: dict[str, str] | None) -> dict[str, Any]:
    """EC2's TagSpecifications: the tags are the resource's from its creation."""
    if not tags:
        return {}
    pairs = [{"Key": k, "Value": v} for k, v in tags.items()]
    return {"TagSpecifications": [{"ResourceType": resource, "Tags": pairs}]}


def cloud_config(public_key: str) -> str:
    """User data whose cloud-init puts `public_key` where a key pair's would go: the
    image's default account (and root's refusal line, as for any key)."""
    return "#cloud-config\n" + yaml.safe_dump({"ssh_authorized_keys": [public_key]})


class AwsProvider:
    bootstrap: tuple[Path, str] | None = None

    def __init__(self, site: str, config: AwsSite, store: Store | None = None) -> None:
        self.site = site
        self.key_in_user_data = config.node_key == "user-data"
        core = botocore.session.Session(profile=config.aws_profile)
        if config.aws_config_file:
            core.set_config_variable("config_file", str(config.aws_config_file))
        if config.aws_credentials_file:
            core.set_config_variable("credentials_file", str(config.aws_credentials_file))
        try:
            session = boto3.Session(botocore_session=core, region_name=config.region or None)
            # interlock retries what is transient itself (one taxonomy for every provider).
            self.ec2 = session.client(
                "ec2",
                endpoint_url=config.endpoint,
                config=Config(
                    retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60
                ),
            )
        except ProfileNotFound:
            raise InterlockError(
                "aws_profile: no such profile in the AWS config and credentials files",
                ExitCode.BAD_INPUT,
            ) from None
        except BotoCoreError as e:  # no region, a region botocore cannot place, …
            raise InterlockError(f"cannot make an EC2 client: {e}", ExitCode.BAD_INPUT) from None
        # Groups made and authorized by this process: (vpc, name, sources) -> group id.
        self._opened: dict[
            tuple[str, str, tuple[int, ...], tuple[ipaddress.IPv4Network, ...]], str
        ] = {}
        # What never changes, looked up once: a subnet's VPC (None: the default VPC), and a
        # VPC's default security group.
        self._vpcs: dict[str | None, str] = {}
        self._defaults: dict[str, str] = {}

    @property
    def api_host(self) -> str:
        return urlsplit(self.ec2.meta.endpoint_url).hostname or ""

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            msg = f"{code}: {e.response.get('Error', {}).get('Message', '')}"
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            cls: type[ProviderError]
            if code in AUTH:
                cls = AuthError
            elif code in QUOTA:
                cls = QuotaError
            elif code.endswith(".NotFound") or code.endswith("NotFound"):
                cls = NotFoundError
            elif code in TRANSIENT or status >= 500:
                cls = TransientError
            else:
                cls = InvalidRequestError
            raise cls(self.site, msg) from None
        except (NoCredentialsError, PartialCredentialsError) as e:
            raise AuthError(self.site, f"{type(e).__name__}: {e}") from None  # no use retrying
        except (EndpointConnectionError, BotoCoreError, ResponseParserError) as e:
            # A reply that does not parse (a proxy's error page, a cut body) is not the
            # answer: botocore says "further retries may succeed", and so they may.
            first = (str(e).splitlines() or [""])[0]  # not the body that did not parse
            raise TransientError(self.site, f"{type(e).__name__}: {first}") from None

    def _call(self, fn: Callable[..., T], **kw: Any) -> T:
        with self._mapped():
            return fn(**kw)

    def metadata(self) -> Metadata:
        types = []
        paginator = self.ec2.get_paginator("describe_instance_types")
        with self._mapped():
            for page in paginator.paginate():
                types += page["InstanceTypes"]
        flavors = tuple(
            Flavor(
                id=t["InstanceType"],
                name=t["InstanceType"],
                vcpus=t["VCpuInfo"]["DefaultVCpus"],
                ram_mib=t["MemoryInfo"]["SizeInMiB"],
                arch="arm64"
                if "arm64" in t["ProcessorInfo"]["SupportedArchitectures"]
                else "x86_64",
                gpus=sum(g.get("Count", 0) for g in t.get("GpuInfo", {}).get("Gpus", [])),
            )
            for t in types
            if t.get("CurrentGeneration", True)
        )
        raw = self._call(
            self.ec2.describe_images, Filters=[{"Name": "state", "Values": ["available"]}]
        )["Images"]
        images = []
        for i in raw:
            found = distro_version(i.get("Name", ""), i.get("Description", ""))
            if found is None:
                continue
            distro, version = found
            tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            hints = tuple(filter(None, [tags.get("os_admin_user")])) + DEFAULT_USERS.get(distro, ())
            images.append(
                Image(
                    id=i["ImageId"],
                    name=i.get("Name", i["ImageId"]),
                    distro=distro,
                    version=version,
                    arch="arm64" if i.get("Architecture") == "arm64" else "x86_64",
                    login_hints=hints,
                    created=str(i.get("CreationDate", "")),
                )
            )
        subnets = self._call(self.ec2.describe_subnets)["Subnets"]
        self._vpcs.update({str(s["SubnetId"]): str(s["VpcId"]) for s in subnets if "VpcId" in s})
        networks = tuple(
            Network(
                id=s["SubnetId"],
                name=s["SubnetId"] + (" (default)" if s.get("DefaultForAz") else ""),
                role="public" if s.get("MapPublicIpOnLaunch") else "private",
                evidence=f"MapPublicIpOnLaunch={s.get('MapPublicIpOnLaunch')}",
                cidrs=tuple(filter(None, [s.get("CidrBlock")])),
            )
            for s in sorted(subnets, key=lambda s: (not s.get("DefaultForAz"), s["SubnetId"]))
        )
        return Metadata(flavors=flavors, images=tuple(images), networks=networks)

    def register_key(
        self, name: str, public_key: str, tags: dict[str, str] | None = None
    ) -> str | None:
        if self.key_in_user_data:
            return None  # the key goes with RunInstances (create_node)
        kw: dict[str, Any] = {
            "KeyName": name,
            "PublicKeyMaterial": public_key.encode(),
            **_tagged("key-pair", tags),
        }
        try:
            self._call(self.ec2.import_key_pair, **kw)
        except InvalidRequestError as e:
            if "InvalidKeyPair.Duplicate" not in e.detail:
                raise
            # There already (a step run again, a key left behind): this one replaces it.
            self._call(self.ec2.delete_key_pair, KeyName=name)
            self._call(self.ec2.import_key_pair, **kw)
        return name

    def delete_key(self, ref: str) -> None:
        self._call(self.ec2.delete_key_pair, KeyName=ref)

    def key_exists(self, ref: str) -> bool:
        try:
            self._call(self.ec2.describe_key_pairs, KeyNames=[ref])
        except NotFoundError:
            return False
        return True

    def create_node(self, request: NodeRequest) -> ServerInfo:
        kw: dict[str, Any] = {
            "ImageId": request.image.id,
            "InstanceType": request.flavor.id,
            "MinCount": 1,
            "MaxCount": 1,
            **_tagged("instance", request.tags),
        }
        if request.key_ref:
            kw["KeyName"] = request.key_ref
        elif self.key_in_user_data and request.public_key:
            kw["UserData"] = cloud_config(request.public_key)  # boto3 encodes it
        if request.network is not None:
            kw["SubnetId"] = request.network.id
        if request.token:
            kw["ClientToken"] = request.token  # tried again: EC2 answers with the first run
        if request.groups:
            # SecurityGroupIds replaces the VPC's default group: it goes first, kept.
            vpc = self._vpc(request.network)
            ids = [self._default_group(vpc), *(self._group_ref(vpc, g) for g in request.groups)]
            kw["SecurityGroupIds"] = list(dict.fromkeys(ids))
        inst = self._call(self.ec2.run_instances, **kw)["Instances"][0]
        running = inst.get("State", {}).get("Name") == "running"
        return ServerInfo(
            str(inst["InstanceId"]),
            "running" if running else "pending",
            inst.get("PublicIpAddress"),
            inst.get("PrivateIpAddress"),
        )

    def _by_ids(
        self, fn: Callable[..., dict[str, Any]], by: str, name: str, ids: list[str]
    ) -> list[dict[str, Any]]:
        """The answers of `fn` for `ids`: one call by ids (parameter `by`) per CHUNK of them.
        One unknown id fails such a call for all (InvalidInstanceID.NotFound,
        InvalidGroup.NotFound): then the ids go in the filter `name`, which leaves unknown
        ones out."""
        pages = []
        ids = list(dict.fromkeys(ids))
        for at in range(0, len(ids), CHUNK):
            chunk = ids[at : at + CHUNK]
            try:
                pages += self._paged(fn, {by: chunk})
            except NotFoundError:
                if len(chunk) == 1:
                    continue  # the one id asked for is the unknown one
                pages += self._paged(fn, {"Filters": [{"Name": name, "Values": chunk}]})
        return pages

    def _paged(self, fn: Callable[..., dict[str, Any]], kw: dict[str, Any]) -> list[dict[str, Any]]:
        """Every page of one describe. Asked by ids too: an answer may still come in pages
        (moto's DescribeInstances gives 100 reservations a page whatever was asked, and a
        page missed reads as nodes gone)."""
        pages = [self._call(fn, **kw)]
        while pages[-1].get("NextToken"):
            pages.append(self._call(fn, **kw, NextToken=pages[-1]["NextToken"]))
        return pages

    def _instances(self, server_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The instances of `server_ids` that EC2 knows, by id."""
        pages = self._by_ids(self.ec2.describe_instances, "InstanceIds", "instance-id", server_ids)
        return {
            str(inst["InstanceId"]): dict(inst)
            for page in pages
            for r in page["Reservations"]
            for inst in r["Instances"]
        }

    def describe_nodes(self, server_ids: list[str]) -> dict[str, ServerInfo]:
        found = self._instances(server_ids)
        out = {}
        for server_id in server_ids:
            inst = found.get(server_id)
            if inst is None:
                out[server_id] = ServerInfo(server_id, "gone", None, None)
                continue
            out[server_id] = ServerInfo(
                server_id,
                STATES.get(inst["State"]["Name"], "gone"),  # shutting-down, terminated
                inst.get("PublicIpAddress"),
                inst.get("PrivateIpAddress"),
            )
        return out

    def describe_node(self, server_id: str) -> ServerInfo:
        return self.describe_nodes([server_id])[server_id]

    def find_node(self, name: str) -> str | None:
        out = self._call(
            self.ec2.describe_instances,
            Filters=[
                {"Name": f"tag:{NODE_TAG}", "Values": [name]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
            ],
        )
        found = [i["InstanceId"] for r in out["Reservations"] for i in r["Instances"]]
        return str(found[0]) if found else None

    def attach_public_ip(
        self, server_id: str, tags: dict[str, str] | None = None
    ) -> tuple[str, str]:
        eip = self._call(self.ec2.allocate_address, Domain="vpc", **_tagged("elastic-ip", tags))
        try:
            self._call(
                self.ec2.associate_address, InstanceId=server_id, AllocationId=eip["AllocationId"]
            )
        except ProviderError:
            # Tagged: what this cannot release, the attempt's rollback finds and releases.
            with suppress(ProviderError):
                self.release_public_ip(eip["AllocationId"])
            raise
        return str(eip["PublicIp"]), str(eip["AllocationId"])

    def public_ips_of(self, node: str) -> list[str]:
        found = self._call(
            self.ec2.describe_addresses, Filters=[{"Name": f"tag:{NODE_TAG}", "Values": [node]}]
        )["Addresses"]
        return sorted(str(a["AllocationId"]) for a in found)

    def release_public_ip(self, ref: str) -> None:
        try:
            addr = self._call(self.ec2.describe_addresses, AllocationIds=[ref])["Addresses"]
        except NotFoundError:
            return
        if addr and addr[0].get("AssociationId"):
            self._call(self.ec2.disassociate_address, AssociationId=addr[0]["AssociationId"])
        self._call(self.ec2.release_address, AllocationId=ref)

    def delete_node(self, server_id: str) -> None:
        with suppress(NotFoundError):
            self._call(self.ec2.terminate_instances, InstanceIds=[server_id])

    # -- security groups -------------------------------------------------------------

    def _instance(self, server_id: str) -> dict[str, Any]:
        out = self._call(self.ec2.describe_instances, InstanceIds=[server_id])
        return dict(out["Reservations"][0]["Instances"][0])

    @staticmethod
    def _group_ids(inst: dict[str, Any]) -> list[str]:
        # The primary interface's groups are the instance's (what AWS filters by).
        nics = sorted(
            inst.get("NetworkInterfaces", []), key=lambda n: n["Attachment"]["DeviceIndex"]
        )
        groups = nics[0]["Groups"] if nics else inst.get("SecurityGroups", [])
        return [str(g["GroupId"]) for g in groups]

    def firewall(self, server_id: str) -> Firewall:
        walls = self.firewalls([server_id])
        if server_id not in walls:
            raise NotFoundError(self.site, f"InvalidInstanceID.NotFound: no instance {server_id}")
        return walls[server_id]

    def firewalls(self, server_ids: list[str]) -> dict[str, Firewall]:
        held = {i: self._group_ids(inst) for i, inst in self._instances(server_ids).items()}
        union = sorted({g for ids in held.values() for g in ids})
        pages = self._by_ids(self.ec2.describe_security_groups, "GroupIds", "group-id", union)
        groups = {str(g["GroupId"]): g for page in pages for g in page["SecurityGroups"]}
        return {server_id: _firewall(ids, groups) for server_id, ids in held.items()}

    def _vpc(self, network: Network | None) -> str:
        """The VPC of a subnet (a Network's id); None: the default VPC, where RunInstances
        puts a node without a subnet. Looked up once (DescribeSubnets, DescribeVpcs)."""
        key = network.id if network is not None else None
        if key not in self._vpcs:
            if key is None:
                found = self._call(
                    self.ec2.describe_vpcs, Filters=[{"Name": "isDefault", "Values": ["true"]}]
                )["Vpcs"]
                if not found:
                    raise InvalidRequestError(self.site, "no default VPC, and no subnet chosen")
            else:
                found = self._call(self.ec2.describe_subnets, SubnetIds=[key])["Subnets"]
            self._vpcs[key] = str(found[0]["VpcId"])
        return self._vpcs[key]

    def _default(self, vpc: str) -> dict[str, Any]:
        """The VPC's default security group, its rules as they are now (one call)."""
        found = self._call(
            self.ec2.describe_security_groups,
            Filters=[
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": "group-name", "Values": ["default"]},
            ],
        )["SecurityGroups"]
        if not found:
            raise NotFoundError(self.site, f"InvalidGroup.NotFound: no default group in {vpc}")
        group = dict(found[0])
        self._defaults[vpc] = str(group["GroupId"])
        return group

    def _default_group(self, vpc: str) -> str:
        """The id of the VPC's default security group (never changes: looked up once)."""
        if vpc not in self._defaults:
            self._default(vpc)
        return self._defaults[vpc]

    def _group_ref(self, vpc: str, group: str) -> str:
        """A group's id from its id or its name in the VPC."""
        if group.startswith("sg-"):
            return group
        ref = self._group(vpc, group)
        if ref is None:
            raise InvalidRequestError(self.site, f"no security group {group!r} in {vpc}")
        return ref

    def default_firewall(self, network: Network | None) -> Firewall:
        """The VPC's default group: DescribeSecurityGroups (DescribeSubnets once per subnet)."""
        group = self._default(self._vpc(network))
        return _firewall([str(group["GroupId"])], {str(group["GroupId"]): group})

    def _group(self, vpc: str, name: str) -> str | None:
        found = self._call(
            self.ec2.describe_security_groups,
            Filters=[
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": "group-name", "Values": [name]},
            ],
        )["SecurityGroups"]
        return str(found[0]["GroupId"]) if found else None

    def _authorize(self, group: str, permission: dict[str, Any]) -> None:
        try:
            self._call(
                self.ec2.authorize_security_group_ingress,
                GroupId=group,
                IpPermissions=[permission],
            )
        except InvalidRequestError as e:
            if "InvalidPermission.Duplicate" not in e.detail:
                raise

    def make_group(
        self,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
        network: Network | None,
    ) -> str:
        return self._made(self._vpc(network), name, ports, sources, tags)

    def _made(
        self,
        vpc: str,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
    ) -> str:
        """The group `name` in `vpc`, made (or found by name) and authorized; what this
        process made and authorized before is not asked for again."""
        known = (vpc, name, ports, tuple(sources))
        if known in self._opened:
            return self._opened[known]
        group = self._group(vpc, name)
        if group is None:
            try:
                group = str(
                    self._call(
                        self.ec2.create_security_group,
                        GroupName=name,
                        Description="interlock: the operator's ports, all within the deployment",
                        VpcId=vpc,
                        **_tagged("security-group", tags),
                    )["GroupId"]
                )
            except InvalidRequestError as e:  # made by a node beside this one meanwhile
                found = self._group(vpc, name)
                if "InvalidGroup.Duplicate" not in e.detail or found is None:
                    raise
                group = found
        ranges = [{"CidrIp": str(s), "Description": "interlock"} for s in sources]
        for port in ports:
            self._authorize(
                group, {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": ranges}
            )
        self._authorize(group, {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group}]})
        self._opened[known] = group
        return group

    def open_ports(
        self,
        server_id: str,
        name: str,
        ports: tuple[int, ...],
        sources: list[ipaddress.IPv4Network],
        tags: dict[str, str],
    ) -> str:
        inst = self._instance(server_id)
        vpc = str(inst["VpcId"])
        known = (vpc, name, ports, tuple(sources))
        made_before = known in self._opened  # made and authorized for a node before this one
        group = self._made(vpc, name, ports, sources, tags)
        try:
            self._attach(inst, group)
        except NotFoundError:
            if not made_before:
                raise
            del self._opened[known]  # deleted meanwhile: made again
            group = self._made(vpc, name, ports, sources, tags)
            self._attach(inst, group)
        return group

    def _attach(self, inst: dict[str, Any], group: str) -> None:
        held = self._group_ids(inst)
        if group not in held:
            self._call(
                self.ec2.modify_instance_attribute,
                InstanceId=inst["InstanceId"],
                Groups=[*held, group],
            )

    def attach_group(self, server_id: str, group: str) -> str:
        inst = self._instance(server_id)
        ref = group if group.startswith("sg-") else self._group(str(inst["VpcId"]), group)
        if ref is None:
            raise InvalidRequestError(self.site, f"no security group {group!r} in the node's VPC")
        self._attach(inst, ref)
        return ref

    def groups_of(self, deployment: str) -> list[str]:
        found = self._call(
            self.ec2.describe_security_groups,
            Filters=[{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [deployment]}],
        )["SecurityGroups"]
        return sorted(str(g["GroupId"]) for g in found)

    def delete_group(self, ref: str) -> None:
        # A group is held until its instances are terminated (AWS: DependencyViolation).
        held = self._call(
            self.ec2.describe_instances,
            Filters=[
                {"Name": "instance.group-id", "Values": [ref]},
                {
                    "Name": "instance-state-name",
                    "Values": ["pending", "running", "shutting-down", "stopping", "stopped"],
                },
            ],
        )
        ids = [i["InstanceId"] for r in held["Reservations"] for i in r["Instances"]]
        if ids:
            with self._mapped():
                self.ec2.get_waiter("instance_terminated").wait(
                    InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 60}
                )
        with suppress(NotFoundError):
            self._call(self.ec2.delete_security_group, GroupId=ref)
        for known in [k for k, group in self._opened.items() if group == ref]:
            del self._opened[known]  # made again when asked for next
