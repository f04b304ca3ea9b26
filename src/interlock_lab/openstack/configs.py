"""Configuration files of the lab's OpenStack services, as text.

Everything listens on the lab's control address (a loopback address); every
service authenticates to Keystone as one service user; Nova and Neutron talk
over the lab's own RabbitMQ. Values that matter for the lab are explained where
they are set; the rest are upstream defaults spelled out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "lab-service"
SERVICE_PROJECT = "service"
REGION = "RegionOne"
PORTS = {
    "keystone": 5000,
    "placement": 8778,
    "glance": 9292,
    "nova": 8774,
    "neutron": 9696,
    # Not the usual ports: a distro MariaDB or RabbitMQ may listen on all addresses.
    "mysql": 13306,
    "rabbit": 15673,
    "erlang-dist": 25673,
}
# epmd also listens on 127.0.0.1 whatever it is told, so its port is claimed per lab
# (interlock_lab.claims); this one is the port wanted.
EPMD_PORT = 14369
DATABASES = ("keystone", "placement", "glance", "nova_api", "nova", "nova_cell0", "neutron")


@dataclass(frozen=True)
class Settings:
    address: str  # the control plane's loopback address
    dir: Path  # the OpenStack part of the lab directory
    db_password: str
    rabbit_password: str
    service_password: str
    lab_api: str  # the lab's control API, for the Nova driver and the ML2 driver
    epmd_port: int = EPMD_PORT
    debug: bool = False

    def url(self, service: str, path: str = "") -> str:
        return f"http://{self.address}:{PORTS[service]}{path}"

    def db(self, name: str) -> str:
        return (
            f"mysql+pymysql://openstack:{self.db_password}@{self.address}:{PORTS['mysql']}/{name}"
        )

    @property
    def transport(self) -> str:
        return f"rabbit://lab:{self.rabbit_password}@{self.address}:{PORTS['rabbit']}/"


def _auth(s: Settings, section: str) -> str:
    return f"""[{section}]
auth_type = password
auth_url = {s.url("keystone", "/v3")}
www_authenticate_uri = {s.url("keystone", "/v3")}
project_name = {SERVICE_PROJECT}
project_domain_name = Default
username = {SERVICE_USER}
user_domain_name = Default
password = {s.service_password}
region_name = {REGION}
"""


def _log_levels(s: Settings) -> str:
    if not s.debug:
        return ""
    return (
        "default_log_levels = keystonemiddleware=DEBUG,keystoneauth=DEBUG,amqp=WARN,"
        "sqlalchemy=WARN,oslo.messaging=INFO,oslo_messaging=INFO,urllib3=WARN\n"
    )


def _common(s: Settings, service: str, default: str = "") -> str:
    """What every service's file has; `default` goes on in its [DEFAULT] section."""
    return f"""[DEFAULT]
debug = {str(s.debug).lower()}
{_log_levels(s)}use_stderr = true
state_path = {s.dir / "state" / service}
{default}
[oslo_concurrency]
lock_path = {s.dir / "locks" / service}

[oslo_messaging_notifications]
driver = noop
"""


def mariadb(s: Settings) -> str:
    # A lab's database: durability traded for speed (it is wiped at `lab down`).
    return f"""[mysqld]
datadir = {s.dir / "mysql"}
socket = {s.dir / "run" / "mysql.sock"}
pid-file = {s.dir / "run" / "mysql.pid"}
bind-address = {s.address}
port = {PORTS["mysql"]}
skip-name-resolve
skip-log-bin
max_connections = 1000
innodb_buffer_pool_size = 128M
innodb_log_file_size = 48M
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
innodb_flush_method = nosync
sync_binlog = 0
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
"""


def rabbitmq(s: Settings) -> str:
    return f"""listeners.tcp.default = {s.address}:{PORTS["rabbit"]}
distribution.listener.interface = {s.address}
distribution.listener.port_range.min = {PORTS["erlang-dist"]}
distribution.listener.port_range.max = {PORTS["erlang-dist"]}
default_user = lab
default_pass = {s.rabbit_password}
default_vhost = /
loopback_users = none
management.tcp.port = 0
log.console = true
log.file = false
"""


def keystone(s: Settings) -> str:
    return (
        _common(s, "keystone")
        + f"""
[database]
connection = {s.db("keystone")}

[token]
provider = fernet

[fernet_tokens]
key_repository = {s.dir / "keystone" / "fernet-keys"}

[fernet_receipts]
key_repository = {s.dir / "keystone" / "fernet-keys"}

[credential]
key_repository = {s.dir / "keystone" / "credential-keys"}
"""
    )


def placement(s: Settings) -> str:
    return (
        _common(s, "placement")
        + f"""
[placement_database]
connection = {s.db("placement")}

[api]
auth_strategy = keystone

{_auth(s, "keystone_authtoken")}"""
    )


def glance(s: Settings) -> str:
    default = f"enabled_backends = file:file\nbind_host = {s.address}\n"
    return (
        _common(s, "glance", default)
        + f"""
[database]
connection = {s.db("glance")}

[paste_deploy]
flavor = keystone

[glance_store]
default_backend = file

[file]
filesystem_store_datadir = {s.dir / "images"}

[os_glance_staging_store]
filesystem_store_datadir = {s.dir / "state" / "glance-staging"}

[os_glance_tasks_store]
filesystem_store_datadir = {s.dir / "state" / "glance-tasks"}

{_auth(s, "keystone_authtoken")}"""
    )


def nova(s: Settings) -> str:
    default = f"""transport_url = {s.transport}
host = lab-compute
my_ip = {s.address}
# Every server is a lab sandbox node: the lab's driver boots it (nova's fake driver underneath).
compute_driver = interlock_lab.LabDriver
# Neutron has no agents here: nothing would ever send the vif-plugged event.
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
instance_name_template = lab-%(uuid)s
allow_resize_to_same_host = true
osapi_compute_listen = {s.address}
metadata_listen = {s.address}
# Spread nothing: one compute host, many small nodes.
cpu_allocation_ratio = 16.0
ram_allocation_ratio = 4.0
disk_allocation_ratio = 16.0
"""
    return (
        _common(s, "nova", default)
        + f"""
[api]
auth_strategy = keystone

[api_database]
connection = {s.db("nova_api")}

[database]
connection = {s.db("nova")}

[wsgi]
api_paste_config = {s.dir / "etc" / "nova" / "api-paste.ini"}

[scheduler]
discover_hosts_in_cells_interval = 2
workers = 1

[conductor]
workers = 1

[notifications]
notification_format = unversioned

[glance]
region_name = {REGION}

[cinder]
os_region_name = {REGION}

[vnc]
enabled = false

[os_vif_ovs]
# No Open vSwitch: nothing is plugged, the lab wires the node itself.
isolate_vif = false

{_auth(s, "keystone_authtoken")}
{_auth(s, "placement")}
{_auth(s, "neutron")}
{_auth(s, "service_user")}send_service_user_token = true
"""
    )


def neutron(s: Settings) -> str:
    default = f"""transport_url = {s.transport}
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
bind_host = {s.address}
api_paste_config = {s.dir / "etc" / "neutron" / "api-paste.ini"}
# No Nova notifications: there are no agents whose port events Nova would wait for.
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
allow_overlapping_ips = true
dhcp_agent_notification = false
rpc_workers = 1
rpc_state_report_workers = 1
periodic_workers = 1
"""
    return (
        _common(s, "neutron", default)
        + f"""
[database]
connection = {s.db("neutron")}

[quotas]
# The admin project owns every site's external networks and their RBAC policies.
quota_rbac_policy = -1

{_auth(s, "keystone_authtoken")}
{_auth(s, "nova")}"""
    )


def ml2(s: Settings) -> str:
    return """[ml2]
type_drivers = flat,local
tenant_network_types = local
# The lab's driver binds every port and realizes floating IPs in the lab's fabric.
mechanism_drivers = interlock_lab
extension_drivers = port_security

[ml2_type_flat]
flat_networks = *
"""
