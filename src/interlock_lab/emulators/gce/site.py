"""A gce lab site: its project served on a loopback port of its own (uvicorn in a
thread), and its entry in the lab's sites file."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from interlock import config
from interlock_lab.emulators.base import SiteContext
from interlock_lab.emulators.faults import FaultPicker
from interlock_lab.emulators.gce.api import make_app
from interlock_lab.emulators.gce.project import Project


class _Server(uvicorn.Server):
    """uvicorn without signal handlers of its own: the lab stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GceSite:
    kind = "gce"

    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.faults = FaultPicker(self.spec.faults, self.spec.seed)
        self.project: Project | None = None
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        self.ctx.dir.mkdir(parents=True, exist_ok=True)
        listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self.project = Project(self.ctx, self.url)
        app = make_app(self.project, self.faults)
        settings = uvicorn.Config(
            app, log_config=None, log_level="warning", lifespan="off", access_log=False
        )
        self.server = _Server(settings)
        server = self.server
        self.thread = threading.Thread(
            target=lambda: server.run(sockets=[listener]), name=f"gce-{self.spec.name}", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)
        if self.project is not None:
            self.project.close()

    def info(self) -> dict[str, Any]:
        options = self.spec.gce_options
        return {
            "endpoint": self.url,
            "project": options.project,
            "zone": options.zone,
            "image_projects": self._image_projects(),
            "os_login_enforced": options.os_login_enforced,
            "api_calls": self.faults.counted(),  # what clients asked of the API, by method
        }

    def _image_projects(self) -> list[str]:
        return sorted({i.properties["project"] for i in self.spec.images})

    def client_config(self) -> config.GceSite:
        options = self.spec.gce_options
        return config.GceSite(
            provider="gce",
            project=options.project,
            zone=options.zone,
            region=self.spec.region,
            endpoint=self.url,
            credentials="anonymous",  # the lab's endpoint asks for none
            image_projects=self._image_projects(),
        )
