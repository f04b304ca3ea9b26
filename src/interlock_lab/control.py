"""The lab's control API (loopback only): status, nodes, ledger, shutdown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException

from interlock_lab.ledger import Entry

if TYPE_CHECKING:
    from interlock_lab.lab import Lab
    from interlock_lab.openstack.cloud import OpenstackCloud


def make_app(lab: Lab) -> FastAPI:
    app = FastAPI(title="interlock lab", version="1", docs_url=None, redoc_url=None)

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        return lab.status()

    @app.get("/v1/nodes")
    async def nodes() -> list[dict[str, Any]]:
        return lab.nodes()

    @app.get("/v1/ledger")
    async def ledger(site: str | None = None, outstanding: bool = False) -> list[Entry]:
        return lab.ledger.entries(site, outstanding=outstanding)

    # Called by the lab's Nova and ML2 drivers from inside its OpenStack.
    def cloud() -> OpenstackCloud:
        if lab.openstack is None:
            raise HTTPException(404, "this lab runs no OpenStack")
        return lab.openstack

    @app.post("/v1/openstack/spawn")
    async def spawn(body: dict[str, Any]) -> dict[str, str]:
        site = cloud().site_of(body["project_id"])
        if site is None:
            raise HTTPException(404, f"no lab site for project {body['project_id']}")
        await site.spawn(body)
        return {"status": "running"}

    @app.post("/v1/openstack/destroy")
    async def destroy(body: dict[str, Any]) -> dict[str, str]:
        site = cloud().site_of_server(body["server_id"])
        if site is not None:
            await site.destroy(body["server_id"], bool(body.get("wipe", True)))
        return {"status": "gone"}

    @app.post("/v1/openstack/floating-ip")
    async def floating_ip(body: dict[str, Any]) -> dict[str, str]:
        site = cloud().site_of(body["project_id"])
        if site is not None:
            await site.floating_ip(body)
        return {"status": "ok"}

    @app.post("/v1/openstack/security")
    async def security(body: dict[str, Any]) -> dict[str, str]:
        c = cloud()
        site = c.site_of(body.get("project_id") or "") or c.site_of_group(body.get("group_id"))
        if site is not None:
            site.security(body)
            await site.filter()
        return {"status": "ok"}

    @app.post("/v1/down", status_code=202)
    async def down() -> dict[str, str]:
        lab.stopping.set()
        return {"status": "stopping"}

    return app
