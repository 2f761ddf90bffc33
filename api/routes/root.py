from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__

public = APIRouter(tags=["service"])
router = APIRouter(tags=["service"])


@public.get("/health", summary="Liveness, no token needed (HEAD too)")
def health(request: Request) -> dict:
    services = request.app.state.services
    return {"status": "ok", "version": __version__,
            "docker": "ok" if services.docker_available() else "unavailable"}


# HEAD as well: load balancers and `curl -I` probe with it (uvicorn sends the headers, no body).
public.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)


@router.get("/", summary="Service name, version and a map of endpoints")
async def index(request: Request) -> dict:
    from fastapi.routing import iter_route_contexts
    endpoints: dict[str, list[str]] = {}
    # Included routers are single entries of app.routes; iter_route_contexts flattens them.
    for r in iter_route_contexts(request.app.routes):
        methods = sorted(getattr(r, "methods", None) or [])
        if methods and r.path != "/openapi.json":
            endpoints.setdefault(r.path, []).extend(m for m in methods if m != "HEAD")
    return {"service": "llm-box-admin-api", "version": __version__, "openapi": "/openapi.json",
            "docs": "docs/api.md", "endpoints": endpoints}


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> dict:
    return request.app.openapi()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
