"""The lab's control API (loopback only): status, nodes, ledger, shutdown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from interlock_lab.ledger import Entry

if TYPE_CHECKING:
    from interlock_lab.daemon import Lab


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

    @app.post("/v1/down", status_code=202)
    async def down() -> dict[str, str]:
        lab.stopping.set()
        return {"status": "stopping"}

    return app
