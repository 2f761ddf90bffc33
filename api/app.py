"""The app factory: every object is built here and hung on app.state; nothing at import time."""
from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .auth import PUBLIC_PATHS, AuthGateMiddleware, reject_unknown_query, require_token, token_valid
from .core import build_core
from .errors import ApiError
from .request_guard import BodyLimitMiddleware, client_address, parse_networks
from .metrics import LatencyMiddleware, Metrics
from .limits import LimitsService
from .routes import downloads, events, jobs, root, ui
from .routes import fleet as fleet_routes
from .routes import limits as limits_routes
from .settings import Settings
from .validation import REPO_ID_PATTERN

log = logging.getLogger(__name__)
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "invalid_input", 429: "rate_limited"}


def error_response(status: int, code: str, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, "status": status, **extra}, status_code=status,
                        headers=headers)


# The same codes and sentences as the validators in api/validation.py give for these fields.
_FIELD_ERRORS = {
    "model_id": ("invalid_model_id",
                 "model_id must be 'org/name' using ASCII letters, digits, '.', '_' and '-'."),
    "revision": ("invalid_revision", "revision must be a branch, tag or commit name."),
    "include": ("invalid_pattern", "include must be printable glob patterns, 2000 characters at most."),
    "exclude": ("invalid_pattern", "exclude must be printable glob patterns, 2000 characters at most."),
    "callback_url": ("invalid_callback_url", "callback_url must be an absolute http(s) URL."),
    "job_id": ("invalid_job_id", "job_id must be the 16-character id of a job."),
    "variant": ("invalid_variant", "variant must be a GGUF quantisation name such as Q4_K_M."),
}


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "The request is not valid."


def _allowed_methods(request: Request) -> list[str]:
    from fastapi.routing import iter_route_contexts
    from starlette.routing import Match
    methods: set[str] = set()
    # app.routes holds each included router as one entry; iter_route_contexts yields their routes.
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


class _RateLimitMiddleware:
    """The default limit on every request but /health, checked before routing.

    slowapi's own middleware looks the endpoint up in `app.routes`; since FastAPI keeps included
    routers there as one opaque entry, it found no endpoint and let every request through."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        limiter: Limiter = scope["app"].state.limiter
        if scope["type"] != "http" or not limiter.enabled or scope["path"] in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        try:
            limiter._check_request_limit(request, None, True)  # what slowapi's middleware calls
        except RateLimitExceeded as exc:
            response = await scope["app"].exception_handlers[RateLimitExceeded](request, exc)
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        for err in exc.errors():
            field = next((str(x) for x in reversed(err.get("loc", ())) if isinstance(x, str)), "")
            if field in _FIELD_ERRORS:
                code, sentence = _FIELD_ERRORS[field]
                return error_response(422, code, sentence)
        return error_response(422, "invalid_input", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI's "error parsing the body": a validation error like any other
            return error_response(422, "invalid_json", "The request body is not valid JSON.")
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; a path served by two
            # routes (GET and PUT /api/active-model) must list both.
            allowed = _allowed_methods(request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            detail = f"{request.method} is not allowed here; use {', '.join(allowed)}."
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route {request.method} {request.url.path}."
        return error_response(exc.status_code, code, detail, headers=headers)

    @app.exception_handler(RateLimitExceeded)
    async def _rate(request: Request, exc: RateLimitExceeded):
        resp = error_response(429, "rate_limited", f"Rate limit exceeded ({exc.detail}); slow down.")
        resp = request.app.state.limiter._inject_headers(resp, request.state.view_rate_limit)
        if "Retry-After" not in resp.headers:
            resp.headers["Retry-After"] = "60"
        return resp

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "The server hit an unexpected error; see its log.")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_environment()
    key = settings.proxy_api_key.get_secret_value()
    if not key.strip():
        raise RuntimeError("PROXY_API_KEY is empty: refusing to start an admin API without a token.")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    metrics = Metrics()
    core = build_core(settings, on_bytes=metrics.downloaded_bytes.inc)
    cache, store, engine, manager = core.cache, core.store, core.engine, core.jobs
    limits = LimitsService(settings, manager, engine.bandwidth)
    metrics.watch_jobs(store.counts_by_status)

    from .services import build_services
    services = build_services(settings, manager, cache)
    from .fleet.service import FleetService
    fleet = FleetService(settings, manager)
    from .inspect.wiring import build_inspection
    inspection = build_inspection(settings, engine, store, services)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from .switch_recovery import recover_interrupted_switches
        app.state.recovered_switches = recover_interrupted_switches(services.containers, settings.env_file)
        manager.start()
        try:
            yield
        finally:
            manager.shutdown()
            services.close()
            fleet.close()
            store.close()

    # The OpenAPI document is served behind the token like every route but /health (root.py);
    # there is no token-less Swagger page.
    app = FastAPI(title="LLM box admin API", version=__version__, lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None,
                  description="Downloads, verifies and switches the models of a self-hosted LLM box. "
                              "Every route but /health needs `Authorization: Bearer <PROXY_API_KEY>`.")
    app.state.settings = settings
    app.state.api_key = key.encode("utf-8", "surrogateescape")
    app.state.jobs = manager
    app.state.cache = cache
    app.state.metrics = metrics
    app.state.services = services
    app.state.limits = limits
    app.state.fleet = fleet
    app.state.inspection = inspection

    proxies = parse_networks(settings.trusted_proxies)

    def rate_key(request: Request) -> str:
        # Separate buckets: anonymous requests from an address never spend its token holder's budget.
        who = "token" if token_valid(request.scope["headers"], app.state.api_key) else "anonymous"
        return f"{client_address(request.scope, proxies)}|{who}"

    limiter = Limiter(key_func=rate_key, default_limits=[settings.rate_limit],
                      headers_enabled=True, enabled=settings.rate_limit_enabled, storage_uri="memory://")
    app.state.limiter = limiter
    # Outermost last: metrics -> rate limit -> token -> body size -> routes.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthGateMiddleware)
    app.add_middleware(_RateLimitMiddleware)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    install_error_handlers(app)

    from .routes.schemas import ERRORS
    secured = {"dependencies": [Depends(require_token), Depends(reject_unknown_query)],
               "responses": {c: ERRORS[c] for c in (401, 413, 429)}}
    app.include_router(root.public)
    app.include_router(ui.router)
    for router in [root.router, downloads.router, jobs.router, events.router, limits_routes.router,
                   *inspection.routers(), *services.routers(), fleet_routes.router]:
        app.include_router(router, **secured)
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """model_id may come in the query or in a flat JSON body; the document shows the query form as
    required, because a request with neither is refused."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path, ops in schema["paths"].items():
        if path == "/api/download-progress":
            continue
        for op in ops.values():
            for param in op.get("parameters", []):
                if param["name"] == "model_id" and param["in"] == "query":
                    param["required"] = True
                    param["schema"].pop("anyOf", None)
                    param["schema"].update(type="string", pattern=REPO_ID_PATTERN, maxLength=200)
    app.openapi_schema = schema
    return schema
