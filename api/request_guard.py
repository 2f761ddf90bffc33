"""Request size and client identity, checked before any route reads a byte of the body."""
from __future__ import annotations

import ipaddress

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError


class _TooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    err = ApiError(f"The request body is larger than {limit} bytes (MAX_BODY_BYTES).",
                   code="payload_too_large", status=413)
    return JSONResponse(err.body(), status_code=413, headers={"Connection": "close"})


class BodyLimitMiddleware:
    """413 past `max_bytes`: at once for a larger Content-Length, else while the body streams in
    (chunked bodies have no length to check up front). The body is never buffered here."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _too_large(self.max_bytes)(scope, receive, send)
        state = {"received": 0, "over": False, "started": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["over"] = True
                    raise _TooLarge()
            return message

        async def guarded_send(message):
            if state["over"]:
                return   # whatever the route made of a cut-off body is not sent
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await _too_large(self.max_bytes)(scope, receive, send)


def parse_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """TRUSTED_PROXIES: comma-separated addresses or CIDR networks."""
    return [ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip()]


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(scope: Scope, trusted: list) -> str:
    """The peer address; X-Forwarded-For is read only while the hop in hand is a trusted proxy,
    right to left, so a client cannot name itself someone else by sending the header."""
    client = (scope.get("client") or ("unknown", 0))[0]
    if not trusted:
        return client
    hops = [h for k, v in scope["headers"] if k == b"x-forwarded-for" for h in v.decode("latin-1").split(",")]
    for hop in reversed(hops):
        current = _ip(client)
        if current is None or not any(current in net for net in trusted):
            break
        ip = _ip(hop)
        if ip is None:
            break
        client = str(ip)
    return client
