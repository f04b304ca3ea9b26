"""The lab's one OpenStack: MariaDB, RabbitMQ, Keystone, Placement, Glance, Nova and
Neutron, installed from PyPI into their own venv (see install.sh), on one loopback
address, started for the lab's openstack sites and stopped with the lab.

Every service runs under its own tini (`tini -s`): a subreaper that reaps what the
service orphans (RabbitMQ's epmd starters and their DNS helpers, workers) while it
runs, so the lab gathers no zombies. tini and the service carry parent-death
signals, so a lab killed with SIGKILL takes its OpenStack with it; the databases
live in the lab directory and go with it. Start-up is ordered by what depends on
what, and everything that can overlap does (database schemas are created in parallel).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from interlock_lab import labdir
from interlock_lab.openstack import configs
from interlock_lab.openstack.configs import PORTS, REGION, SERVICE_PROJECT, SERVICE_USER, Settings

START_TIMEOUT = 240.0
STOP_GRACE = 3.0
APIS = {  # service -> (WSGI module, catalog type, path of the endpoint)
    "keystone": ("keystone.wsgi.api:application", "identity", "/v3"),
    "placement": ("placement.wsgi.api:application", "placement", ""),
    "glance": ("glance.wsgi.api:application", "image", ""),
    "nova": ("nova.wsgi.osapi_compute:application", "compute", "/v2.1"),
    "neutron": ("neutron.wsgi.api:application", "network", ""),
}


# Each service's config files (under etc/), in the order its commands read them.
SERVICE_CONFIGS: dict[str, dict[str, Callable[[Settings], str]]] = {
    "keystone": {"keystone/keystone.conf": configs.keystone},
    "placement": {"placement/placement.conf": configs.placement},
    "glance": {"glance/glance-api.conf": configs.glance},
    "nova": {"nova/nova.conf": configs.nova},
    "neutron": {
        "neutron/neutron.conf": configs.neutron,
        "neutron/plugins/ml2/ml2_conf.ini": configs.ml2,
    },
}


class OpenstackError(RuntimeError):
    """The lab's OpenStack did not start; the message names the part and its log."""


def default_venv() -> Path:
    """Where install.sh puts the OpenStack venv: next to interlock's own venv."""
    env = os.environ.get("INTERLOCK_OPENSTACK_VENV")
    if env:
        return Path(env)
    return Path(sys.prefix).parent / ".venv-openstack"


class Controller:
    def __init__(
        self,
        root: Path,
        address: str,
        lab_api: str,
        epmd_port: int = configs.EPMD_PORT,
        venv: Path | None = None,
    ) -> None:
        self.root = root
        self.dir = root / "openstack"
        self.venv = venv or default_venv()
        self.address = address
        secret_dir = self.dir / "secrets"
        self.admin_password_file = secret_dir / "admin"
        self.settings = Settings(
            address=address,
            dir=self.dir,
            db_password=labdir.secret(secret_dir / "db"),
            rabbit_password=labdir.secret(secret_dir / "rabbit"),
            service_password=labdir.secret(secret_dir / "service"),
            lab_api=lab_api,
            epmd_port=epmd_port,
            debug=bool(os.environ.get("INTERLOCK_LAB_OPENSTACK_DEBUG")),
        )
        self.admin_password = labdir.secret(self.admin_password_file)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}

    # -- processes -------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def _cmd(self, name: str, *args: str) -> list[str]:
        """An OpenStack command with its service's config files (they ignore OS_*_CONFIG_DIR)."""
        service = next(s for s in SERVICE_CONFIGS if s in name)
        files = (self.dir / "etc" / f for f in SERVICE_CONFIGS[service])
        return [self._bin(name), *(f"--config-file={f}" for f in files), *args]

    def _env(self) -> dict[str, str]:
        etc = self.dir / "etc"
        return {
            **os.environ,
            labdir.MARK: str(self.root),
            "INTERLOCK_LAB_API": self.settings.lab_api,  # for the lab's Nova and ML2 drivers
            "OS_KEYSTONE_CONFIG_DIR": str(etc / "keystone"),
            "OS_PLACEMENT_CONFIG_DIR": str(etc / "placement"),
            "OS_GLANCE_CONFIG_DIR": str(etc / "glance"),
            "OS_NOVA_CONFIG_DIR": str(etc / "nova"),
            "OS_NEUTRON_CONFIG_DIR": str(etc / "neutron"),
            "PATH": f"{self.venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """A long-running service: tini (a subreaper that reaps what the service orphans,
        and forwards signals to its process group), then the service, each ended by the
        kernel when its parent dies. The service's session is tini's pid (see `stop`)."""
        log = open(self.dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        supervised = ["tini", "-s", "-g", "-p", "SIGKILL", "--",
                      "setpriv", "--pdeathsig", "KILL", "--", *argv]  # fmt: skip
        with log:
            self.procs[name] = subprocess.Popen(
                supervised,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env or self._env(),
                cwd=self.dir,
                start_new_session=True,  # its workers too: stop() ends the whole session
            )

    def _run(self, name: str, argv: list[str]) -> None:
        """A one-shot command (schema sync, bootstrap); its output goes to its log."""
        env = {**self._env(), "OS_BOOTSTRAP_PASSWORD": self.admin_password}
        with open(self.dir / "logs" / f"{name}.log", "ab") as log:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        if done.returncode != 0:
            raise OpenstackError(f"{name} failed (exit {done.returncode}): {self._tail(name)}")

    def _tail(self, name: str) -> str:
        try:
            lines = (self.dir / "logs" / f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        last = [line for line in lines if line.strip()][-3:]
        return " | ".join(last)[-600:] + f" (log: {self.dir / 'logs' / name}.log)"

    def _wait(self, what: str, ready: Callable[[], bool], deadline: float) -> None:
        delay = 0.05
        while not ready():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise OpenstackError(
                        f"{name} exited ({proc.returncode}) while waiting for {what}: "
                        + self._tail(name)
                    )
            if time.monotonic() > deadline:
                raise OpenstackError(f"timed out waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _answers(self, service: str) -> bool:
        conn = http.client.HTTPConnection(self.address, PORTS[service], timeout=2)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status < 500
        except OSError:
            return False
        finally:
            conn.close()

    def _listening(self, port: int) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.address, port), 1):
            return True
        return False

    # -- start -----------------------------------------------------------------

    @contextlib.contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        self.timings[what] = round(time.monotonic() - start, 1)

    def start(self) -> None:
        if not (self.venv / "bin" / "nova-compute").exists():
            raise OpenstackError(
                f"no OpenStack installed in {self.venv}: run ./install.sh "
                "(or set INTERLOCK_OPENSTACK_VENV)"
            )
        for tool in ("tini", "epmd", "mariadbd"):
            if shutil.which(tool) is None:
                raise OpenstackError(f"{tool} is not installed: run ./install.sh")
        deadline = time.monotonic() + START_TIMEOUT
        try:
            with self._timed("configure"):
                self._configure()
            with self._timed("database and message bus"):
                self._start_mariadb_and_rabbit(deadline)
            with self._timed("schemas"):
                self._schemas()
            with self._timed("keystone"):
                self._start_api("keystone")
                self._wait("keystone", lambda: self._answers("keystone"), deadline)
                self._register_services()
            with self._timed("services"):
                for service in ("placement", "glance", "nova", "neutron"):
                    self._start_api(service)
                for daemon in ("nova-conductor", "nova-scheduler", "neutron-rpc-server",
                               "neutron-periodic-workers"):  # fmt: skip
                    self._spawn(daemon, self._cmd(daemon))
                for service in ("placement", "glance", "nova", "neutron"):
                    self._wait(service, lambda s=service: self._answers(s), deadline)  # type: ignore[misc]
                self._spawn("nova-compute", self._cmd("interlock-lab-nova-compute"))
                self._wait("nova-compute", self._compute_up, deadline)
                self._run("nova-discover-hosts", self._cmd("nova-manage", "cell_v2",
                                                           "discover_hosts"))  # fmt: skip
        except BaseException:
            self.stop()
            raise

    def _configure(self) -> None:
        s = self.settings
        etc = self.dir / "etc"
        for sub in ("logs", "run", "mysql", "rabbit", "images", "state", "locks",
                    "keystone/fernet-keys", "keystone/credential-keys"):  # fmt: skip
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        files = {
            "mysql.cnf": configs.mariadb(s),
            "rabbitmq/rabbitmq.conf": configs.rabbitmq(s),
            "rabbitmq/enabled_plugins": "[].\n",
            **{f: write(s) for service in SERVICE_CONFIGS.values() for f, write in service.items()},
        }
        for name, text in files.items():
            labdir.write_secret(etc / name, text)  # they hold passwords
        shipped = self.venv / "etc"
        shutil.copy(shipped / "nova" / "api-paste.ini", etc / "nova" / "api-paste.ini")
        shutil.copy(shipped / "neutron" / "api-paste.ini", etc / "neutron" / "api-paste.ini")
        shutil.copy(
            shipped / "glance" / "glance-api-paste.ini", etc / "glance" / "glance-api-paste.ini"
        )

    def _start_mariadb_and_rabbit(self, deadline: float) -> None:
        etc = self.dir / "etc"
        mysql_dir = self.dir / "mysql"
        if not (mysql_dir / "mysql").exists():
            self._run("mysql-install-db", ["mysql_install_db", "--no-defaults",
                      f"--datadir={mysql_dir}", "--user=root", "--skip-test-db",
                      "--auth-root-authentication-method=socket"])  # fmt: skip
        # Run as root (the lab's own): a user switch would drop the parent-death signal.
        self._spawn("mariadb", ["mariadbd", f"--defaults-file={etc / 'mysql.cnf'}", "--user=root"])
        rabbit = self.dir / "rabbit"
        epmd_port = str(self.settings.epmd_port)
        env = {
            **self._env(),
            "HOME": str(rabbit),
            "RABBITMQ_CONFIG_FILE": str(etc / "rabbitmq" / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(etc / "rabbitmq" / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(rabbit / "mnesia"),
            "RABBITMQ_LOG_BASE": str(rabbit / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "run" / "rabbit.pid"),
            "RABBITMQ_NODENAME": "lab@localhost",
            # The lab's own epmd, on the lab's address and a port claimed for this lab (epmd
            # adds 127.0.0.1 itself). Every erl RabbitMQ starts (its periodic epmd starter
            # too) reads ERL_FLAGS: none starts an epmd of its own.
            "ERL_EPMD_ADDRESS": self.address,
            "ERL_EPMD_PORT": epmd_port,
            "ERL_FLAGS": "-start_epmd false",
        }
        self._spawn("epmd", ["epmd", "-port", epmd_port, "-address", self.address], env)
        self._spawn("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env)
        sock = self.dir / "run" / "mysql.sock"
        mysql = ["mariadb", f"--socket={sock}", "-uroot"]

        def mariadb_up() -> bool:
            return subprocess.run([*mysql, "-e", "SELECT 1"], capture_output=True).returncode == 0

        self._wait("MariaDB", mariadb_up, deadline)
        grants = "".join(f"CREATE DATABASE IF NOT EXISTS {db};" for db in configs.DATABASES) + (
            f"CREATE USER IF NOT EXISTS 'openstack'@'%' IDENTIFIED BY "
            f"'{self.settings.db_password}';"
            "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'%';"
        )
        done = subprocess.run([*mysql, "-e", grants], capture_output=True, text=True)
        if done.returncode != 0:
            raise OpenstackError(f"MariaDB refused the lab's databases: {done.stderr.strip()}")
        self._wait("RabbitMQ", lambda: self._listening(PORTS["rabbit"]), deadline)

    def _schemas(self) -> None:
        c = self._cmd
        keystone_setup = [
            c("keystone-manage", "db_sync"),
            c("keystone-manage", "fernet_setup", "--keystone-user", "root",
              "--keystone-group", "root"),
            c("keystone-manage", "credential_setup", "--keystone-user", "root",
              "--keystone-group", "root"),
            # The password goes in the environment (OS_BOOTSTRAP_PASSWORD), not the command line.
            [*c("keystone-manage"), "bootstrap",
             "--bootstrap-admin-url", self.settings.url("keystone", "/v3"),
             "--bootstrap-public-url", self.settings.url("keystone", "/v3"),
             "--bootstrap-internal-url", self.settings.url("keystone", "/v3"),
             "--bootstrap-region-id", REGION],
        ]  # fmt: skip
        nova_setup = [
            c("nova-manage", "api_db", "sync"),
            c("nova-manage", "cell_v2", "map_cell0"),
            c("nova-manage", "cell_v2", "create_cell", "--name", "cell1"),
            c("nova-manage", "db", "sync"),
        ]
        chains = {
            "keystone-setup": keystone_setup,
            "placement-sync": [c("placement-manage", "db", "sync")],
            "glance-sync": [c("glance-manage", "db_sync")],
            "nova-setup": nova_setup,
            "neutron-sync": [c("neutron-db-manage", "upgrade", "heads")],
        }

        def run_chain(name: str) -> None:
            for argv in chains[name]:
                self._run(name, argv)

        with ThreadPoolExecutor(len(chains)) as pool:
            for future in [pool.submit(run_chain, name) for name in chains]:
                future.result()

    def _start_api(self, service: str) -> None:
        module = APIS[service][0]
        self._spawn(f"{service}-api", [
            self._bin("uwsgi"), "--home", str(self.venv),
            "--http-socket", f"{self.address}:{PORTS[service]}",
            "--module", module, "--need-app", "--processes", "1", "--threads", "8",
            "--enable-threads", "--buffer-size", "65535", "--disable-logging",
            # uwsgi's http-socket has no keep-alive: tell clients not to reuse connections.
            "--add-header", "Connection: close", "--die-on-term",
        ])  # fmt: skip

    def admin(self) -> Any:
        """An openstacksdk connection as the cloud's admin."""
        from openstack import connection

        return connection.Connection(
            auth_url=self.settings.url("keystone", "/v3"),
            username="admin",
            password=self.admin_password,
            project_name="admin",
            user_domain_name="Default",
            project_domain_name="Default",
            region_name=REGION,
            identity_api_version="3",
        )

    def _register_services(self) -> None:
        conn = self.admin()
        ident = conn.identity
        project = ident.find_project(SERVICE_PROJECT) or ident.create_project(
            name=SERVICE_PROJECT, domain_id="default"
        )
        user = ident.find_user(SERVICE_USER) or ident.create_user(
            name=SERVICE_USER, password=self.settings.service_password, domain_id="default"
        )
        # admin for the services' own calls; service so that their service tokens (which
        # Nova sends along with a user's token) pass keystonemiddleware's role check.
        service_role = ident.find_role("service") or ident.create_role(name="service")
        for role in (ident.find_role("admin"), service_role):
            ident.assign_project_role_to_user(project, user, role)
        for service, (_, kind, path) in APIS.items():
            if service == "keystone":
                continue
            svc = ident.find_service(service) or ident.create_service(name=service, type=kind)
            if not list(ident.endpoints(service_id=svc.id)):
                for interface in ("public", "internal", "admin"):
                    ident.create_endpoint(
                        service_id=svc.id,
                        interface=interface,
                        url=self.settings.url(service, path),
                        region_id=REGION,
                    )

    def _compute_up(self) -> bool:
        try:
            services = list(self.admin().compute.services(binary="nova-compute"))
        except Exception:  # the API is still warming up
            return False
        return any(s.state == "up" for s in services)

    # -- stop ------------------------------------------------------------------

    def stop(self) -> None:
        """End every process (grace, then SIGKILL) and wait until they are gone."""
        tinis = list(self.procs.values())
        for p in tinis:  # tini passes it on to the service's process group
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
        end = time.monotonic() + STOP_GRACE
        for p in tinis:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, end - time.monotonic()))
        # Workers outlive their parent, in process groups of their own: the session
        # (each tini's pid) names them all.
        members = _session_members({p.pid for p in tinis})
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in tinis:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
        labdir.wait_gone(members, 10)
        for pid in members:  # orphaned workers came to us (a subreaper): reap them
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        self.procs.clear()

    def info(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "auth_url": self.settings.url("keystone", "/v3"),
            "admin_password_file": str(self.admin_password_file),
            "start_seconds": self.timings,
        }


def _session_members(sessions: set[int]) -> list[int]:
    """The processes whose session is one of `sessions`."""
    members = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (proc / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[3]) in sessions:
                    members.append(int(proc.name))
    return members


def main() -> None:
    """`python -m interlock_lab.openstack.controller DIR ADDRESS`: start, print, stop."""
    root, address = Path(sys.argv[1]), sys.argv[2]
    labdir.become_subreaper()
    c = Controller(root, address, "http://127.0.0.1:9")
    start = time.monotonic()
    try:
        c.start()
        print(json.dumps({**c.info(), "seconds": round(time.monotonic() - start, 1)}, indent=2))
    finally:
        c.stop()


if __name__ == "__main__":
    main()
