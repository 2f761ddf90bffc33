"""Bearer-token check: constant-time, never logs or echoes the token."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import Unauthorized

PUBLIC_PATHS = frozenset({"/health"})
# The dashboard's static files hold no data (every data call sends the token): no token to load them.
PUBLIC_PREFIXES = ("/ui",)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or any(path == p or path.startswith(p + "/") for p in PUBLIC_PREFIXES)

# auto_error=False: our own 401 body, and the scheme still appears in the OpenAPI document.
bearer = HTTPBearer(auto_error=False, description="PROXY_API_KEY")


def token_valid(headers: list[tuple[bytes, bytes]], expected: bytes) -> bool:
    """`Authorization: Bearer <token>` (scheme in any case), compared as bytes in constant time:
    a non-ASCII token is a plain mismatch, not an encoding error."""
    raw = next((v for k, v in headers if k == b"authorization"), b"")
    scheme, _, credentials = raw.partition(b" ")
    credentials = credentials.strip()
    return scheme.lower() == b"bearer" and bool(credentials) and hmac.compare_digest(credentials, expected)


async def require_token(request: Request,
                        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """Also a dependency of every secured router, so the OpenAPI document shows the scheme."""
    if not token_valid(request.scope["headers"], request.app.state.api_key):
        raise Unauthorized() if creds is None else Unauthorized("The bearer token is not valid.")


class AuthGateMiddleware:
    """401 before routing and before a byte of the body is read: an anonymous client cannot make
    the API buffer or parse anything (FastAPI reads the body before it runs dependencies)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or is_public(scope["path"])
                or token_valid(scope["headers"], scope["app"].state.api_key)):
            return await self.app(scope, receive, send)
        has_header = any(k == b"authorization" for k, _ in scope["headers"])
        err = Unauthorized("The bearer token is not valid.") if has_header else Unauthorized()
        # Connection: close - the unread body is not worth receiving just to keep the connection.
        await JSONResponse(err.body(), status_code=401, headers={**err.headers, "Connection": "close"})(
            scope, receive, send)


async def reject_unknown_query(request: Request) -> None:
    """A misspelt parameter (`modle_id=`) is an error, not silently ignored."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {p.alias for p in _all_query_params(dependant)}
    unknown = [k for k in request.query_params.keys() if k not in known]
    if unknown:
        from .errors import InvalidInput
        raise InvalidInput(f"Unknown query parameter(s): {', '.join(sorted(set(unknown)))[:200]}.",
                           code="unknown_parameter")


def _all_query_params(dependant):
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _all_query_params(sub)
