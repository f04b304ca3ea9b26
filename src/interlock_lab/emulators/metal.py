"""The lab's bare metal: Redfish BMCs (sushy-tools' emulator, fake driver).

Every machine of the pool is a Redfish system. Power on boots a sandbox node
with the machine's installed OS, root reachable with the pool's key at the
machine's fixed public address (as Packet did); power off stops the node and
its address stops answering. Its disk (the node's upper dir) survives power
cycles, as a real disk does, until the lab goes down.

sushy-tools registers its routes on one module-level Flask app, so a lab serves
one metal site (the daemon refuses a second).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import threading
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import bcrypt
from sushy_tools import error as sushy_error
from sushy_tools.emulator import main as emulator
from sushy_tools.emulator.resources.systems import fakedriver
from werkzeug.serving import BaseWSGIServer, make_server

from interlock import config
from interlock.ssh.keys import ed25519_pair
from interlock_lab import labdir
from interlock_lab.emulators.base import SiteContext
from interlock_lab.emulators.faults import FaultPicker
from interlock_lab.node.rootfs import FirstBoot
from interlock_lab.sitefile import METAL_FIRST_HOST

BMC_USER = "admin"
NAMESPACE = uuid.UUID("6c1d6c4e-3a57-4d2f-9a40-4f6e2c1b7a11")


class Machine:
    def __init__(
        self,
        name: str,
        uuid_: str,
        flavor: str,
        image: str,
        private_ip: ipaddress.IPv4Address,
        public_ip: ipaddress.IPv4Address,
    ) -> None:
        self.name, self.uuid, self.flavor, self.image = name, uuid_, flavor, image
        self.private_ip, self.public_ip = private_ip, public_ip


class _InstantDriver(fakedriver.FakeDriver):  # type: ignore[misc]
    """Power changes land at once (the stock fake driver waits 1-11 s and only
    applies them on the next read), and the lab hears of each one before it is
    stored: if booting fails the client gets an error and the state is unchanged."""

    site: MetalSite | None = None
    _lock = threading.Lock()

    def set_power_state(self, identity: str, state: str) -> None:
        if "On" in state:
            targets = ["On"]
        elif state in ("ForceOff", "GracefulShutdown"):
            targets = ["Off"]
        elif "Restart" in state:
            targets = ["Off", "On"]
        else:
            raise sushy_error.NotSupportedError(f"Power state {state} is not supported")
        with self._lock:
            system = self._get(identity)
            for new in targets:
                if system["power_state"] != new:
                    # A one-time network boot is the pool's reinstall: a fresh OS.
                    reinstall = new == "On" and system.get("boot_device") == "Pxe"
                    if self.site is not None:
                        self.site.power(system["uuid"], new == "On", reinstall)
                    changes = {"boot_device": "Hdd"} if reinstall else {}
                    self._update(system, power_state=new, pending_power=None, **changes)


class MetalSite:
    kind = "metal"

    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.faults = FaultPicker(self.spec.faults, self.spec.seed)
        self.machines = self._machines()
        self.server: BaseWSGIServer | None = None
        self.thread: threading.Thread | None = None
        self.url = ""
        self.key_file = ctx.dir / "pool-key"
        self.password_file = ctx.dir / "bmc-password"

    def _machines(self) -> dict[str, Machine]:
        net = self.spec.networks[0]
        privates = list(net.cidr.hosts())[METAL_FIRST_HOST:]
        publics = list(self.spec.public.pool.hosts())[METAL_FIRST_HOST:]
        out: dict[str, Machine] = {}
        for group in self.spec.machines:
            for i in range(1, group.count + 1):
                name = f"{group.prefix}-{i:02d}"
                n = len(out)
                uid = str(uuid.uuid5(NAMESPACE, f"{self.spec.name}/{name}"))
                out[uid] = Machine(name, uid, group.flavor, group.image, privates[n], publics[n])
        return out

    def start(self) -> None:
        self.ctx.dir.mkdir(parents=True, exist_ok=True)
        _write_key(self.key_file)
        password = secrets.token_urlsafe(18)
        labdir.write_secret(self.password_file, password + "\n")
        htpasswd = self.ctx.dir / "htpasswd"
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        labdir.write_secret(htpasswd, f"{BMC_USER}:{hashed}\n")
        systems = [
            {
                "uuid": m.uuid,
                "name": m.name,
                "power_state": "Off",
                "nics": [{"mac": _mac(m.uuid), "ip": str(m.private_ip)}],
            }
            for m in self.machines.values()
        ]
        app = emulator.app
        app._cache = {}
        app.configure(
            extra_config={
                "SUSHY_EMULATOR_FAKE_DRIVER": True,
                "SUSHY_EMULATOR_STATE_DIR": str(self.ctx.dir / "bmc-state"),
                "SUSHY_EMULATOR_FAKE_SYSTEMS": systems,
            }
        )
        with mock.patch.object(fakedriver, "FakeDriver", _InstantDriver):
            driver = app.systems
        driver.site = self
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        wsgi = _Faults(emulator.RedfishAuthMiddleware(app, str(htpasswd)), self.faults)
        self.server = make_server("127.0.0.1", 0, wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/redfish/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join()
        emulator.app._cache = {}

    def info(self) -> dict[str, Any]:
        return {
            "endpoint": self.url,
            "username": BMC_USER,
            "password_file": str(self.password_file),
            "pool_key": str(self.key_file),
            "machines": [
                {
                    "name": m.name,
                    "uuid": m.uuid,
                    "flavor": m.flavor,
                    "image": m.image,
                    "public_ip": str(m.public_ip),
                    "private_ip": str(m.private_ip),
                    "powered": m.uuid in self.ctx.runtime.nodes,
                }
                for m in self.machines.values()
            ],
        }

    def client_config(self) -> config.MetalSite:
        machines = []
        for m in self.machines.values():
            flavor, image = self.spec.flavor(m.flavor), self.spec.image(m.image)
            machines.append(
                config.Machine(
                    name=m.name,
                    uuid=m.uuid,
                    public_ip=str(m.public_ip),
                    vcpus=flavor.vcpus,
                    ram_mib=flavor.ram_mib,
                    disk_gib=flavor.disk_gib,
                    distro=image.os,
                    version=image.version,
                )
            )
        return config.MetalSite(
            provider="metal",
            region=self.spec.region,
            endpoint=self.url,
            username=BMC_USER,
            password_file=self.password_file,
            pool_key=self.key_file,
            machines=machines,
        )

    def power(self, system_uuid: str, on: bool, reinstall: bool = False) -> None:
        """Called by the BMC in its request thread, before the new state is stored."""
        machine = self.machines[system_uuid]
        if on:
            if reinstall:
                self.ctx.runtime.call(self.ctx.runtime.halt(machine.uuid, wipe=True))
            self.ctx.runtime.call(self._boot(machine))
            self.ctx.ledger.created(self.spec.name, "server", machine.name, machine.image)
        else:
            self.ctx.runtime.call(self.ctx.runtime.halt(machine.uuid, wipe=False))
            self.ctx.ledger.released(self.spec.name, "server", machine.name)

    async def _boot(self, m: Machine) -> None:
        rt = self.ctx.runtime
        net_spec = self.spec.networks[0]
        net = await rt.network(f"{self.spec.name}/{net_spec.name}", net_spec.cidr)
        image = self.spec.image(m.image)
        pool_key = Path(str(self.key_file) + ".pub").read_text().strip()
        boot = FirstBoot(
            hostname=m.name,
            behaviour=self.spec.behaviour(image),
            private_ip=str(m.private_ip),
            instance_keys=(pool_key,),
            hide=(str(rt.run_dir),),
        )
        await rt.boot(m.uuid, self.spec.name, net, m.private_ip, boot)
        try:
            await rt.publish(m.public_ip, self.spec.public.ports, m.uuid)
        except Exception:
            await rt.halt(m.uuid, wipe=False)
            raise


def _mac(system_uuid: str) -> str:
    raw = uuid.UUID(system_uuid).bytes[:3]
    return "52:54:00:" + ":".join(f"{b:02x}" for b in raw)


def _write_key(path: Path) -> None:
    if path.exists():
        return
    private, public = ed25519_pair()
    labdir.write_secret(path, private)
    Path(str(path) + ".pub").write_text(public + " interlock-lab-pool\n")


class _Faults:
    """Injects declared faults: action = the Redfish action name (e.g.
    `ComputerSystem.Reset`) for POSTs, or the HTTP method for anything else."""

    def __init__(self, app: Any, faults: FaultPicker) -> None:
        self.app = app
        self.faults = faults

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        action = path.rsplit("/", 1)[-1] if method == "POST" and "/Actions/" in path else method
        fault = self.faults.pick(action)
        if fault is None:
            return self.app(environ, start_response)
        body = json.dumps(
            {
                "error": {
                    "code": "Base.1.0.GeneralError",
                    "message": fault.message,
                    "@Message.ExtendedInfo": [{"MessageId": fault.error}],
                }
            }
        ).encode()
        start_response(
            f"{fault.status} Injected",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
