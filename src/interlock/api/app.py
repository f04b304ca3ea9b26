"""The HTTP API: the services the CLI uses, behind a bearer token, as typed views.

Every route under /api/v1 needs the token; errors a user can act on keep the CLI's
message (bad input 422, not found 404, this machine lacks something 503).
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from interlock import __version__
from interlock.api import token as tokens
from interlock.api import ui
from interlock.api.jobs import Job, JobView
from interlock.api.served import Served
from interlock.engine import Engine
from interlock.errors import ExitCode, InterlockError
from interlock.model import Choice, Traits
from interlock.views import (
    DeploymentStatus,
    DeploymentSummary,
    NodeView,
    RoleView,
    SiteDetail,
    SiteSummary,
)

STATUS = {
    ExitCode.BAD_INPUT: 422,
    ExitCode.NOT_RUNNING: 404,
    ExitCode.ENVIRONMENT: 503,
    ExitCode.FAILURE: 502,  # a site's API or a node failed what was asked of it
}


class ApplyRequest(BaseModel):
    model_config = {"extra": "forbid"}
    file: str = Field(description="The deployment file, a path on the server's machine.")
    sites: list[str] = Field(default=[], description="Sites in order of preference "
                             "(default: the file's).")  # fmt: skip
    name: str | None = Field(default=None, description="Deployment name instead of the file's.")


class ConformRequest(BaseModel):
    model_config = {"extra": "forbid"}
    sites: list[str] = Field(default=[], description="Sites to test (default: all).")
    baseline: str | None = Field(default="aws", description="The yardstick site (null: none).")


class PlanRequest(BaseModel):
    model_config = {"extra": "forbid"}
    sites: list[str] = Field(default=[], description="Sites to plan on (default: all).")
    traits: Traits


def create(sites_file: Path | None, token: str) -> FastAPI:
    served = Served(sites_file, token)
    app = FastAPI(
        title="interlock",
        version=__version__,
        description="Nodes, deployments and conformance of interlock's sites. Every "
        "/api/v1 route needs `Authorization: Bearer TOKEN` (`interlock serve --show-token`).",
    )
    bearer = HTTPBearer(auto_error=False)

    def authorized(
        given: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if given is None or not tokens.matches(given.credentials, token):
            raise HTTPException(
                401,
                "a bearer token is needed: Authorization: Bearer TOKEN "
                "(interlock serve --show-token)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    Eng = Annotated[Engine, Depends(served.engine)]
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(authorized)])

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        # Where and what, never the value given: it may be something secret pasted.
        shown = [{k: err[k] for k in ("loc", "msg", "type") if k in err} for err in e.errors()]
        return JSONResponse({"detail": shown}, status_code=422)

    @app.exception_handler(InterlockError)
    async def _interlock_error(_: Request, e: InterlockError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=STATUS.get(e.code, 500))

    @api.get("/sites", response_model=list[SiteSummary])
    def sites(e: Eng) -> list[SiteSummary]:
        return [SiteSummary.of(n, cfg) for n, cfg in e.sites.sites.items()]

    @api.get("/sites/{name}", response_model=SiteDetail)
    def site(name: str, e: Eng) -> SiteDetail:
        return served.site(e, name)

    @api.post("/plan", response_model=dict[str, Choice])
    async def plan(body: PlanRequest, e: Eng) -> dict[str, Choice]:
        """Per site, what a node would get, and why. Creates nothing."""
        from interlock.services import deploy

        return await deploy.plan(e, body.sites or list(e.sites.sites), body.traits)

    @api.get("/nodes", response_model=list[NodeView])
    def nodes(e: Eng, deployment: str | None = None) -> list[NodeView]:
        return [NodeView.of(n) for n in e.store.nodes(deployment)]

    @api.get("/nodes/{name}", response_model=NodeView)
    def node(name: str, e: Eng) -> NodeView:
        return served.node(e, name)

    @api.get("/deployments", response_model=list[DeploymentSummary])
    def deployments(e: Eng) -> list[DeploymentSummary]:
        from interlock.services import apply

        return [DeploymentSummary.of(*found) for found in apply.deployments(e)]

    @api.get("/deployments/{name}", response_model=DeploymentStatus)
    def deployment(name: str, e: Eng) -> DeploymentStatus:
        from interlock.services import apply

        return DeploymentStatus.of(*apply.status(e, name))

    @api.get("/roles", response_model=list[RoleView])
    def roles() -> list[RoleView]:
        from interlock.services import apply

        found = sorted(apply.library([]).roles.values(), key=lambda r: r.name)
        return [RoleView.model_validate({**r.model_dump(), "folder": r.folder}) for r in found]

    @api.get("/conform/runs")
    def conform_runs() -> list[dict[str, Any]]:
        """Every conformance run kept, newest first, with each site's verdict."""
        from interlock.services import conform

        return conform.history()

    @api.get("/conform/runs/{run}")
    def conform_run(run: str) -> dict[str, Any]:
        """A run's whole report (`latest`: the newest); schema in docs/conformance.md."""
        from interlock.services import conform

        with conform.results() as store:
            return store.get(run)

    @api.get("/conform/compare")
    def conform_compare(a: str, b: str) -> list[dict[str, Any]]:
        """Two runs capability by capability (ids, or `latest`), or two sites' latest."""
        from interlock.services import conform

        return conform.compared(a, b)

    def started(job: Job) -> JSONResponse:
        return JSONResponse(job.view.model_dump(mode="json"), status_code=202,
                            headers={"Location": f"/api/v1/jobs/{job.view.id}"})  # fmt: skip

    @api.post("/deployments", status_code=202, response_model=JobView)
    async def apply(body: ApplyRequest) -> JSONResponse:
        """Make a deployment what its file says (as `interlock apply`): checked now (a bad
        file is 422, nothing made), then a job; follow /api/v1/jobs/{id}/events."""
        return started(served.apply(Path(body.file), body.sites, body.name))

    @api.delete("/deployments/{name}", status_code=202, response_model=JobView)
    async def down(name: str, e: Eng) -> JSONResponse:
        """Release the deployment's nodes (as `interlock down NAME`), as a job."""
        return started(served.down(e, name))

    @api.post("/conform/runs", status_code=202, response_model=JobView)
    async def conform_start(body: ConformRequest) -> JSONResponse:
        """Run conformance (as `interlock conform run`) as a job; its result names the
        run, whose report is /api/v1/conform/runs/{run}."""
        return started(served.conform(body.sites, body.baseline))

    def found_job(job_id: str) -> Job:
        found = served.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id!r} on this server")
        return found

    FoundJob = Annotated[Job, Depends(found_job)]

    @api.get("/jobs", response_model=list[JobView])
    def all_jobs() -> list[JobView]:
        """This server's jobs, newest first."""
        return served.jobs.all()

    @api.get("/jobs/{job_id}", response_model=JobView)
    def job(found: FoundJob) -> JobView:
        return found.view

    @api.get("/jobs/{job_id}/events", response_class=EventSourceResponse)
    async def job_events(
        found: FoundJob, last_event_id: Annotated[int, Header()] = -1
    ) -> AsyncIterator[ServerSentEvent]:
        """The job's events as server-sent events (progress, then done or failed), from
        the first (or after Last-Event-ID); the stream ends with the job."""
        async for ev in found.follow(last_event_id):
            yield ServerSentEvent(data=ev.model_dump(mode="json"), event=ev.kind, id=str(ev.seq))

    app.include_router(api)
    ui.mount(app, served)
    return app
