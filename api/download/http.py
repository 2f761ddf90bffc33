"""Plain http.client transport for blob bytes.

The engine moves bytes itself instead of going through huggingface_hub (which cannot resume across
runs): one keep-alive connection per worker thread, `read1` what has arrived, `os.pwrite` to the
part's offset. That keeps the GIL mostly released and the RSS flat at multi-GiB sizes.

Like huggingface_hub (httpx with `trust_env`), connections honour `HTTPS_PROXY`/`HTTP_PROXY`/
`NO_PROXY` (a CONNECT tunnel for https) and the CA bundle named by `REQUESTS_CA_BUNDLE` or
`SSL_CERT_FILE`, so a box behind a corporate proxy moves bytes the way it plans.
"""
from __future__ import annotations

import base64
import functools
import http.client
import os
import socket
import ssl
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

USER_AGENT = "llm-box-admin-api/0.4"
_OFFICIAL_HOSTS = ("huggingface.co", "hf.co")


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> "Origin":
        u = urlsplit(url)
        return cls(u.scheme, u.hostname or "", u.port or (443 if u.scheme == "https" else 80))

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def hub_origins(endpoint: str) -> frozenset[Origin]:
    """The origins that are the Hub itself: the endpoint's, plus huggingface.co and hf.co when the
    endpoint is the official one. They get the token and their redirects are followed; any other
    origin is a CDN."""
    own = Origin.of(endpoint)
    if own.scheme == "https" and own.port == 443 and own.host in _OFFICIAL_HOSTS:
        return frozenset(Origin("https", h, 443) for h in _OFFICIAL_HOSTS)
    return frozenset({own})


def auth_headers(url: str, token: str | None, hubs: frozenset[Origin]) -> dict[str, str]:
    """The token goes only to the Hub's own origins, never to a CDN it redirects to."""
    return {"Authorization": f"Bearer {token}"} if token and Origin.of(url) in hubs else {}


def target(url: str) -> str:
    u = urlsplit(url)
    return (u.path or "/") + (f"?{u.query}" if u.query else "")


@functools.lru_cache(maxsize=4)
def _tls_context(cafile: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def tls_context() -> ssl.SSLContext:
    """The CA bundle the way requests/httpx users set it; the system store otherwise."""
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or None
    return _tls_context(cafile)


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    headers: dict

    @classmethod
    def for_origin(cls, origin: Origin) -> "Proxy | None":
        proxies = urllib.request.getproxies_environment()
        url = proxies.get(origin.scheme) or proxies.get("all")
        if not url or urllib.request.proxy_bypass_environment(origin.netloc, proxies):
            return None
        if "://" not in url:
            url = "http://" + url
        u = urlsplit(url)
        headers = {}
        if u.username:
            cred = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
            headers["Proxy-Authorization"] = "Basic " + base64.b64encode(cred).decode()
        return cls(u.hostname or "", u.port or 8080, headers)


class Connection:
    """A reusable connection to one origin (through a proxy when the environment names one),
    reopened after errors."""

    def __init__(self, origin: Origin, timeout: float, connect_timeout: float):
        self.origin = origin
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.proxy = Proxy.for_origin(origin)
        self._conn: http.client.HTTPConnection | None = None

    def _open(self) -> http.client.HTTPConnection:
        o, p, t = self.origin, self.proxy, self.connect_timeout
        if o.scheme == "https":
            conn = http.client.HTTPSConnection(p.host if p else o.host, p.port if p else o.port, timeout=t,
                                               context=tls_context())
            if p:
                conn.set_tunnel(o.host, o.port, headers=p.headers)   # CONNECT, then TLS to the origin
        else:
            conn = http.client.HTTPConnection(p.host if p else o.host, p.port if p else o.port, timeout=t)
        conn.connect()
        conn.sock.settimeout(self.timeout)  # a recv that waits this long is a stall
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        return conn

    def request(self, method: str, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        if self._conn is None:
            self._conn = self._open()
        forward = self.proxy is not None and self.origin.scheme == "http"   # plain http: absolute URL
        extra = self.proxy.headers if forward else {}
        try:
            self._conn.request(method, url if forward else target(url),
                               headers={"User-Agent": USER_AGENT, **extra, **headers})
            return self._conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    @property
    def sock(self) -> socket.socket | None:
        """The socket of the open connection (an ssl.SSLSocket for https), for splice (body.py)."""
        return self._conn.sock if self._conn is not None else None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def abort(self) -> None:
        """Unblock a recv in another thread (pause/cancel must not wait for a stall timeout)."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def finish(resp: http.client.HTTPResponse, conn: Connection) -> None:
    """Hand the connection back for the next request. Before Python 3.13 a response read to its
    end with read1 is not closed, and the next request on the connection fails after it was sent;
    read() of the (empty) rest closes it properly. Leftover body bytes: the connection is dropped."""
    if resp.length == 0 and not resp.will_close:
        resp.read()
    else:
        conn.close()
