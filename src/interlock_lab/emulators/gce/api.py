"""The Compute Engine v1 REST API over one lab project (FastAPI): the paths, query
parameters and bodies the google-cloud-compute SDK sends, Google's list and error shapes,
and the site's injected faults (action: the method's id, e.g. `compute.instances.insert`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from interlock_lab.emulators.faults import FaultPicker
from interlock_lab.emulators.gce import filters
from interlock_lab.emulators.gce.project import Project
from interlock_lab.emulators.gce.resources import GceError, Operation, invalid, not_found

Json = Annotated[dict[str, Any], Body()]
PAGE = 500  # Google's default and largest maxResults


def make_app(p: Project, faults: FaultPicker) -> FastAPI:
    app = FastAPI(title="interlock lab: Compute Engine", openapi_url=None, docs_url=None)
    base = "/compute/v1/projects/{project}"
    zone = base + "/zones/{zone}"
    region = base + "/regions/{region}"

    @app.exception_handler(GceError)
    async def google_error(_: Request, e: GceError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        err = invalid(f"Invalid value for field '{where}': {first.get('msg', 'invalid')}")
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        err = (
            not_found(request.url.path)
            if e.status_code == 404
            else GceError(e.status_code, "invalid", str(e.detail))
        )
        return JSONResponse(err.body(), status_code=err.code)

    def begin(method: str, project: str, where: str | None = None, here: str = "") -> None:
        """Counts the call, fires a declared fault, and checks the project and place."""
        fault = faults.pick(method)
        if fault is not None:
            raise GceError(fault.status, fault.error, fault.message)
        if project != p.project:
            raise not_found(f"projects/{project}")
        if where is not None and where != here:
            raise not_found(f"projects/{project}/{where}")

    def at_zone(method: str, project: str, z: str) -> None:
        begin(method, project, f"zones/{z}", f"zones/{p.links.zone}")

    def at_region(method: str, project: str, r: str) -> None:
        begin(method, project, f"regions/{r}", f"regions/{p.links.region}")

    def op(o: Operation) -> dict[str, Any]:
        return o.show(p.links)

    def listing(
        kind: str, items: list[dict[str, Any]], link: str, request: Request
    ) -> dict[str, Any]:
        q = request.query_params
        match = filters.parse(q.get("filter") or "")
        found = [i for i in items if match(i)]
        try:
            size = min(int(q.get("maxResults") or PAGE), PAGE)
            start = int(q.get("pageToken") or 0)
        except ValueError:
            raise invalid("Invalid value for field 'maxResults' or 'pageToken'.") from None
        out: dict[str, Any] = {
            "kind": kind,
            "id": link.split("/projects/", 1)[-1],
            "items": found[start : start + size],
            "selfLink": link,
        }
        if start + size < len(found):
            out["nextPageToken"] = str(start + size)
        return out

    # -- zones, regions, the project ------------------------------------------------

    @app.get(base)
    def get_project(project: str) -> dict[str, Any]:
        begin("compute.projects.get", project)
        return p.catalog.project()

    @app.get(base + "/zones")
    def list_zones(project: str, request: Request) -> dict[str, Any]:
        begin("compute.zones.list", project)
        link = f"{p.links.project_link()}/zones"
        return listing("compute#zoneList", [p.catalog.zone()], link, request)

    @app.get(zone)
    def get_zone(project: str, zone: str) -> dict[str, Any]:
        at_zone("compute.zones.get", project, zone)
        return p.catalog.zone()

    def quotas() -> list[dict[str, Any]]:
        q = p.spec.quotas
        return [
            {
                "metric": "INSTANCES",
                "limit": float(q.instances if q.instances is not None else 1000),
                "usage": float(len(p.instances)),
            },
            {
                "metric": "STATIC_ADDRESSES",
                "limit": float(q.floating_ips if q.floating_ips is not None else 1000),
                "usage": float(len(p.addresses)),
            },
        ]

    @app.get(base + "/regions")
    def list_regions(project: str, request: Request) -> dict[str, Any]:
        begin("compute.regions.list", project)
        link = f"{p.links.project_link()}/regions"
        return listing("compute#regionList", [p.catalog.region(quotas())], link, request)

    @app.get(region)
    def get_region(project: str, region: str) -> dict[str, Any]:
        at_region("compute.regions.get", project, region)
        return p.catalog.region(quotas())

    # -- machine types and images ---------------------------------------------------

    @app.get(zone + "/machineTypes")
    def list_machine_types(project: str, zone: str, request: Request) -> dict[str, Any]:
        at_zone("compute.machineTypes.list", project, zone)
        link = f"{p.links.zone_link()}/machineTypes"
        return listing("compute#machineTypeList", p.catalog.machine_types(), link, request)

    @app.get(zone + "/machineTypes/{name}")
    def get_machine_type(project: str, zone: str, name: str) -> dict[str, Any]:
        at_zone("compute.machineTypes.get", project, zone)
        return p.catalog.machine_type(p.catalog.flavor(name))

    def image_call(method: str, project: str) -> None:
        fault = faults.pick(method)
        if fault is not None:
            raise GceError(fault.status, fault.error, fault.message)

    @app.get(base + "/global/images")
    def list_images(project: str, request: Request) -> dict[str, Any]:
        image_call("compute.images.list", project)
        shown = [p.catalog.show_image(i) for i in p.catalog.images(project)]
        link = f"{p.links.project_link(project)}/global/images"
        return listing("compute#imageList", shown, link, request)

    @app.get(base + "/global/images/family/{family}")
    def image_from_family(project: str, family: str) -> dict[str, Any]:
        image_call("compute.images.getFromFamily", project)
        return p.catalog.show_image(p.catalog.from_family(project, family))

    @app.get(base + "/global/images/{name}")
    def get_image(project: str, name: str) -> dict[str, Any]:
        image_call("compute.images.get", project)
        return p.catalog.show_image(p.catalog.image(project, name))

    # -- networks ---------------------------------------------------------------------

    @app.get(base + "/global/networks")
    def list_networks(project: str, request: Request) -> dict[str, Any]:
        begin("compute.networks.list", project)
        shown = [p.catalog.show_network(n) for n in p.spec.networks]
        link = f"{p.links.project_link()}/global/networks"
        return listing("compute#networkList", shown, link, request)

    @app.get(base + "/global/networks/{name}")
    def get_network(project: str, name: str) -> dict[str, Any]:
        begin("compute.networks.get", project)
        return p.catalog.show_network(p.catalog.network(name))

    @app.get(region + "/subnetworks")
    def list_subnetworks(project: str, region: str, request: Request) -> dict[str, Any]:
        at_region("compute.subnetworks.list", project, region)
        shown = [p.catalog.show_subnetwork(n) for n in p.spec.networks]
        link = f"{p.links.region_link()}/subnetworks"
        return listing("compute#subnetworkList", shown, link, request)

    @app.get(region + "/subnetworks/{name}")
    def get_subnetwork(project: str, region: str, name: str) -> dict[str, Any]:
        at_region("compute.subnetworks.get", project, region)
        return p.catalog.show_subnetwork(p.catalog.network(name))

    @app.get(base + "/aggregated/subnetworks")
    def aggregated_subnetworks(project: str, request: Request) -> dict[str, Any]:
        begin("compute.subnetworks.aggregatedList", project)
        shown = [p.catalog.show_subnetwork(n) for n in p.spec.networks]
        return aggregated(
            "compute#subnetworkAggregatedList",
            "subnetworks",
            f"regions/{p.links.region}",
            shown,
            request,
        )

    def aggregated(
        kind: str, key: str, scope: str, items: list[dict[str, Any]], request: Request
    ) -> dict[str, Any]:
        match = filters.parse(request.query_params.get("filter") or "")
        found = [i for i in items if match(i)]
        entry: dict[str, Any] = (
            {key: found}
            if found
            else {
                "warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": f"There are no results for scope '{scope}' on this page.",
                }
            }
        )
        return {
            "kind": kind,
            "id": f"projects/{p.project}/aggregated/{key}",
            "items": {scope: entry},
            "selfLink": f"{p.links.project_link()}/aggregated/{key}",
        }

    # -- instances --------------------------------------------------------------------

    def shown_instances() -> list[dict[str, Any]]:
        with p.lock:
            return [i.show(p.links) for i in p.instances.values()]

    @app.get(zone + "/instances")
    def list_instances(project: str, zone: str, request: Request) -> dict[str, Any]:
        at_zone("compute.instances.list", project, zone)
        link = f"{p.links.zone_link()}/instances"
        return listing("compute#instanceList", shown_instances(), link, request)

    @app.get(base + "/aggregated/instances")
    def aggregated_instances(project: str, request: Request) -> dict[str, Any]:
        begin("compute.instances.aggregatedList", project)
        return aggregated(
            "compute#instanceAggregatedList",
            "instances",
            f"zones/{p.links.zone}",
            shown_instances(),
            request,
        )

    @app.get(zone + "/instances/{name}")
    def get_instance(project: str, zone: str, name: str) -> dict[str, Any]:
        at_zone("compute.instances.get", project, zone)
        with p.lock:
            return p.instance(name).show(p.links)

    @app.post(zone + "/instances")
    def insert_instance(
        project: str,
        zone: str,
        body: Json,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_zone("compute.instances.insert", project, zone)
        return op(p.insert_instance(body, requestId))

    @app.delete(zone + "/instances/{name}")
    def delete_instance(
        project: str,
        zone: str,
        name: str,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_zone("compute.instances.delete", project, zone)
        return op(p.delete_instance(name, requestId))

    @app.post(zone + "/instances/{name}/stop")
    def stop_instance(
        project: str,
        zone: str,
        name: str,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_zone("compute.instances.stop", project, zone)
        return op(p.stop_instance(name, requestId))

    @app.post(zone + "/instances/{name}/start")
    def start_instance(
        project: str,
        zone: str,
        name: str,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_zone("compute.instances.start", project, zone)
        return op(p.start_instance(name, requestId))

    @app.post(zone + "/instances/{name}/setMetadata")
    def set_metadata(
        project: str,
        zone: str,
        name: str,
        body: Json,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_zone("compute.instances.setMetadata", project, zone)
        return op(p.set_metadata(name, body, requestId))

    @app.post(zone + "/instances/{name}/setLabels")
    def set_labels(
        project: str,
        zone: str,
        name: str,
        body: Json,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_zone("compute.instances.setLabels", project, zone)
        return op(p.set_labels(name, body, requestId))

    @app.post(zone + "/instances/{name}/setTags")
    def set_tags(
        project: str,
        zone: str,
        name: str,
        body: Json,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_zone("compute.instances.setTags", project, zone)
        return op(p.set_tags(name, body, requestId))

    @app.post(zone + "/instances/{name}/addAccessConfig")
    def add_access_config(
        project: str,
        zone: str,
        name: str,
        body: Json,
        networkInterface: str,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_zone("compute.instances.addAccessConfig", project, zone)
        return op(p.add_access_config(name, networkInterface, body, requestId))

    @app.post(zone + "/instances/{name}/deleteAccessConfig")
    def delete_access_config(
        project: str,
        zone: str,
        name: str,
        accessConfig: str,
        networkInterface: str,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_zone("compute.instances.deleteAccessConfig", project, zone)
        return op(p.delete_access_config(name, networkInterface, accessConfig, requestId))

    # -- static addresses ---------------------------------------------------------------

    @app.get(region + "/addresses")
    def list_addresses(project: str, region: str, request: Request) -> dict[str, Any]:
        at_region("compute.addresses.list", project, region)
        with p.lock:
            shown = [a.show(p.links) for a in p.addresses.values()]
        link = f"{p.links.region_link()}/addresses"
        return listing("compute#addressList", shown, link, request)

    @app.get(region + "/addresses/{name}")
    def get_address(project: str, region: str, name: str) -> dict[str, Any]:
        at_region("compute.addresses.get", project, region)
        with p.lock:
            return p.address(name).show(p.links)

    @app.post(region + "/addresses")
    def insert_address(
        project: str,
        region: str,
        body: Json,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_region("compute.addresses.insert", project, region)
        return op(p.insert_address(body, requestId))

    @app.delete(region + "/addresses/{name}")
    def delete_address(
        project: str,
        region: str,
        name: str,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        at_region("compute.addresses.delete", project, region)
        return op(p.delete_address(name, requestId))

    # -- firewall rules ---------------------------------------------------------------

    @app.get(base + "/global/firewalls")
    def list_firewalls(project: str, request: Request) -> dict[str, Any]:
        begin("compute.firewalls.list", project)
        with p.lock:
            shown = [f.show(p.links) for f in p.firewalls.values()]
        link = f"{p.links.project_link()}/global/firewalls"
        return listing("compute#firewallList", shown, link, request)

    @app.get(base + "/global/firewalls/{name}")
    def get_firewall(project: str, name: str) -> dict[str, Any]:
        begin("compute.firewalls.get", project)
        with p.lock:
            return p.firewall(name).show(p.links)

    @app.post(base + "/global/firewalls")
    def insert_firewall(
        project: str,
        body: Json,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        begin("compute.firewalls.insert", project)
        return op(p.insert_firewall(body, requestId))

    @app.delete(base + "/global/firewalls/{name}")
    def delete_firewall(
        project: str,
        name: str,
        requestId: str | None = None,
    ) -> dict[str, Any]:
        begin("compute.firewalls.delete", project)
        return op(p.delete_firewall(name, requestId))

    # -- operations -------------------------------------------------------------------

    def operations(scope: str, request: Request) -> dict[str, Any]:
        with p.lock:
            shown = [o.show(p.links) for o in p.operations.values() if o.scope == scope]
        link = f"{p.links.project_link()}/{scope}/operations"
        return listing("compute#operationList", shown, link, request)

    @app.get(zone + "/operations")
    def list_zone_operations(project: str, zone: str, request: Request) -> dict[str, Any]:
        at_zone("compute.zoneOperations.list", project, zone)
        return operations(f"zones/{zone}", request)

    @app.get(zone + "/operations/{name}")
    def get_zone_operation(project: str, zone: str, name: str) -> dict[str, Any]:
        at_zone("compute.zoneOperations.get", project, zone)
        return op(p.operation(f"zones/{zone}", name))

    @app.post(zone + "/operations/{name}/wait")
    def wait_zone_operation(project: str, zone: str, name: str) -> dict[str, Any]:
        at_zone("compute.zoneOperations.wait", project, zone)
        return op(p.wait(f"zones/{zone}", name))

    @app.get(region + "/operations")
    def list_region_operations(project: str, region: str, request: Request) -> dict[str, Any]:
        at_region("compute.regionOperations.list", project, region)
        return operations(f"regions/{region}", request)

    @app.get(region + "/operations/{name}")
    def get_region_operation(project: str, region: str, name: str) -> dict[str, Any]:
        at_region("compute.regionOperations.get", project, region)
        return op(p.operation(f"regions/{region}", name))

    @app.post(region + "/operations/{name}/wait")
    def wait_region_operation(project: str, region: str, name: str) -> dict[str, Any]:
        at_region("compute.regionOperations.wait", project, region)
        return op(p.wait(f"regions/{region}", name))

    @app.get(base + "/global/operations")
    def list_global_operations(project: str, request: Request) -> dict[str, Any]:
        begin("compute.globalOperations.list", project)
        return operations("global", request)

    @app.get(base + "/global/operations/{name}")
    def get_global_operation(project: str, name: str) -> dict[str, Any]:
        begin("compute.globalOperations.get", project)
        return op(p.operation("global", name))

    @app.post(base + "/global/operations/{name}/wait")
    def wait_global_operation(project: str, name: str) -> dict[str, Any]:
        begin("compute.globalOperations.wait", project)
        return op(p.wait("global", name))

    return app
