"""The web UI: pages rendered on the server (Jinja2) from the same services and views as the
API, made live with htmx and server-sent events. Signing in puts the API token in an
HttpOnly, same-site cookie; every page and stream checks it as the API checks its bearer."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Cookie, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import escape

from interlock.api import charts
from interlock.api import token as tokens
from interlock.api.served import Served
from interlock.engine import Engine
from interlock.errors import InterlockError
from interlock.state.records import DeploymentRecord, NodeRecord, NodeRoleRecord
from interlock.views import MARK, DeploymentSummary, by_node

HERE = Path(__file__).parent
COOKIE = "interlock_token"
# How often a deployment page's stream looks at the store (any process may be changing it:
# this server's jobs, or `interlock apply` in a terminal).
LOOK_EVERY = 0.5


class SignIn(Exception):
    """A page asked for without the token: to the sign-in page, then back."""

    def __init__(self, after: str) -> None:
        self.after = after


def mount(app: FastAPI, served: Served) -> None:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals["mark"] = MARK
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    ui = APIRouter(include_in_schema=False)

    def signed_in(
        request: Request, token: Annotated[str | None, Cookie(alias=COOKIE)] = None
    ) -> None:
        if token is None or not tokens.matches(token, served.token):
            raise SignIn(request.url.path)

    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, e: SignIn) -> Response:
        if request.headers.get("accept", "").startswith("text/event-stream"):
            return Response(status_code=401)
        return RedirectResponse(f"/login?after={quote(e.after)}", status_code=303)

    Eng = Annotated[Engine, Depends(served.engine)]
    pages = APIRouter(include_in_schema=False, dependencies=[Depends(signed_in)])

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, template, context, status_code=status)

    # -- signing in ----------------------------------------------------------------------

    @ui.get("/login")
    def login_form(request: Request, after: str = "/") -> HTMLResponse:
        return page(request, "login.html", after=_local(after), wrong=False)

    @ui.post("/login")
    def login(
        request: Request, token: Annotated[str, Form()], after: Annotated[str, Form()] = "/"
    ) -> Response:
        if not tokens.matches(token.strip(), served.token):
            return page(request, "login.html", status=401, after=_local(after), wrong=True)
        done = RedirectResponse(_local(after), status_code=303)
        done.set_cookie(COOKIE, served.token, httponly=True, samesite="strict", path="/")
        return done

    @ui.post("/logout")
    def logout() -> Response:
        done = RedirectResponse("/login", status_code=303)
        done.delete_cookie(COOKIE, path="/")
        return done

    # -- pages -----------------------------------------------------------------------------

    @pages.get("/")
    def dashboard(request: Request, e: Eng) -> HTMLResponse:
        from interlock.services import apply, conform
        from interlock.views import SiteSummary

        runs = conform.history()
        latest = {s: (r["id"], v) for r in reversed(runs) for s, v in r["verdicts"].items()}
        return page(
            request, "dashboard.html",
            sites=[SiteSummary.of(n, c) for n, c in e.sites.sites.items()], latest=latest,
            deployments=[DeploymentSummary.of(*d) for d in apply.deployments(e)],
            jobs=served.jobs.all()[:10], runs=runs[:5],
        )  # fmt: skip

    @pages.get("/sites/{name}")
    def site(request: Request, name: str, e: Eng) -> HTMLResponse:
        history = charts.site_history(name)
        return page(request, "site.html", site=served.site(e, name), history=history,
                    chart=charts.history_svg(name, history))  # fmt: skip

    @pages.get("/deployments/{name}")
    def deployment(request: Request, name: str, e: Eng) -> HTMLResponse:
        from interlock.services import apply

        job = next((j for j in served.jobs.all() if j.target == name and j.kind == "apply"), None)
        try:
            shown = _graph(*apply.status(e, name))
        except InterlockError as err:
            if job is None or job.state not in ("queued", "running"):
                raise HTTPException(404, str(err)) from None
            shown = {}  # this server's apply has not recorded it yet: the stream will
        return page(request, "deployment.html", name=name, job=job, **shown)

    @pages.get("/ui/deployments/{name}/graph", response_class=EventSourceResponse)
    async def deployment_graph(request: Request, name: str) -> AsyncIterator[ServerSentEvent]:
        """The deployment's node-role graph as HTML, sent again whenever it changes."""
        from interlock.services import apply

        shown = None
        while not await request.is_disconnected():
            with served.opened() as e:
                try:
                    found = apply.status(e, name)
                except InterlockError:  # released meanwhile
                    found = None
            html = (
                templates.get_template("_graph.html").render(**_graph(*found), mark=MARK)
                if found
                else "<p>Not applied (yet, or released).</p>"
            )
            if html != shown:
                shown = html
                yield ServerSentEvent(raw_data=html, event="graph")
            await asyncio.sleep(LOOK_EVERY)

    @pages.get("/nodes/{name}")
    def node(request: Request, name: str, e: Eng) -> HTMLResponse:
        n = served.node(e, name)
        roles = [r for r in e.store.roles(n.deployment) if r.node == name] if n.group else []
        return page(request, "node.html", node=n, roles=sorted(roles, key=lambda r: r.rank))

    @pages.get("/conform")
    def conformance(request: Request, e: Eng) -> HTMLResponse:
        from interlock.services import conform

        runs = conform.history()
        report = None
        if runs:
            with conform.results() as store:
                report = store.get(runs[0]["id"])
        shown = (report or {}).get("sites", {})
        charted = {s: charts.history_svg(s, charts.site_history(s)) for s in shown}
        return page(request, "conform.html", report=report, runs=runs, charts=charted,
                    sites=list(e.sites.sites))  # fmt: skip

    @pages.post("/conform")
    async def conform_start(
        sites: Annotated[list[str], Form()], baseline: Annotated[str, Form()] = ""
    ) -> Response:
        job = served.conform(sites, baseline or None)
        return RedirectResponse(f"/jobs/{job.view.id}", status_code=303)

    @pages.get("/apply")
    def apply_form(request: Request, e: Eng) -> HTMLResponse:
        return page(request, "apply.html", sites=list(e.sites.sites), error=None, form={})

    @pages.post("/apply")
    async def apply_start(
        request: Request,
        e: Eng,
        file: Annotated[str, Form()],
        sites: Annotated[list[str] | None, Form()] = None,
        name: Annotated[str, Form()] = "",
    ) -> Response:
        form = {"file": file, "sites": sites or [], "name": name}
        try:
            job = served.apply(Path(file), sites or [], name or None)
        except InterlockError as err:
            return page(request, "apply.html", status=422, sites=list(e.sites.sites),
                        error=str(err), form=form)  # fmt: skip
        return RedirectResponse(f"/deployments/{job.view.target}", status_code=303)

    @pages.post("/ui/plan")
    async def plan(
        request: Request,
        e: Eng,
        file: Annotated[str, Form()],
        sites: Annotated[list[str] | None, Form()] = None,
    ) -> HTMLResponse:
        """Per group of the file, what each site would give its nodes: an HTML fragment."""
        from interlock.services import apply, deploy

        try:
            spec, chosen = apply.check(Path(file), sites or None)
            plans = {g: await deploy.plan(e, chosen, group.traits)
                     for g, group in spec.groups.items()}  # fmt: skip
        except InterlockError as err:
            return page(request, "_plan.html", error=str(err), plans={})
        return page(request, "_plan.html", error=None, plans=plans)

    @pages.get("/jobs/{job_id}")
    def job(request: Request, job_id: str) -> HTMLResponse:
        found = served.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id!r} on this server")
        return page(request, "job.html", job=found.view, events=list(found.events))

    @pages.get("/ui/jobs/{job_id}/events", response_class=EventSourceResponse)
    async def job_events(job_id: str) -> AsyncIterator[ServerSentEvent]:
        """The job's lines as HTML list items, then its end state, then `end`."""
        found = served.jobs.get(job_id)
        if found is None:
            return
        async for ev in found.follow():
            yield ServerSentEvent(raw_data=f"<li>{escape(ev.text)}</li>", event="line")
            if ev.kind != "progress":
                state = "done" if ev.kind == "done" else "failed"
                yield ServerSentEvent(
                    raw_data=f'<span class="state {state}">{state}</span>', event="state"
                )
                yield ServerSentEvent(raw_data="", event="end")

    app.include_router(ui)
    app.include_router(pages)


def _graph(
    record: DeploymentRecord, nodes: list[NodeRecord], records: list[NodeRoleRecord]
) -> dict[str, Any]:
    """What a deployment's graph shows: per node, its node-roles in the order they run."""
    summary = DeploymentSummary.of(record, nodes, records)
    return {"record": record, "nodes": nodes, "by_node": by_node(records),
            "counts": summary.node_roles,
            "converged": summary.node_roles.keys() == {"active"}}  # fmt: skip


def _local(after: str) -> str:
    """Only a path of this server (never another site) to go back to after signing in."""
    return after if after.startswith("/") and not after.startswith("//") else "/"
