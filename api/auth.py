"""Bearer-token check: constant-time, never logs or echoes the token."""
from __future__ import annotations

import hmac

from fastapi import Request

from .errors import Unauthorized


def require_token(request: Request) -> None:
    expected: bytes = request.app.state.api_key
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    # Compare bytes: a non-ASCII token must be a plain 401, not an encoding error.
    if not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), expected):
        raise Unauthorized("The bearer token is not valid.")
