"""Bearer-token check: constant-time, never logs or echoes the token."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import Unauthorized

# auto_error=False: our own 401 body, and the scheme still appears in the OpenAPI document.
bearer = HTTPBearer(auto_error=False, description="PROXY_API_KEY")


async def require_token(request: Request,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    if creds is None or not creds.credentials:
        raise Unauthorized()
    expected: bytes = request.app.state.api_key
    # Compare bytes: a non-ASCII token must be a plain 401, not an encoding error.
    if not hmac.compare_digest(creds.credentials.strip().encode("utf-8", "surrogateescape"), expected):
        raise Unauthorized("The bearer token is not valid.")


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
