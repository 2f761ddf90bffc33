"""Plain http.client transport for blob bytes.

The engine moves bytes itself instead of going through huggingface_hub (which cannot resume across
runs): one keep-alive connection per worker thread, `read1` what has arrived, `os.pwrite` to the
part's offset. That keeps the GIL mostly released and the RSS flat at multi-GiB sizes.
"""
from __future__ import annotations

import email.utils
import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from ..errors import DownloadError

USER_AGENT = "llm-box-admin-api/0.3"
_ERROR_CODES = {
    "GatedRepo": ("gated_repo", "The repository is gated: a token with access is required."),
    "RepoNotFound": ("repo_not_found", "The repository does not exist on the Hub (or the token cannot see it)."),
    "RevisionNotFound": ("revision_not_found", "The revision does not exist in the repository."),
    "EntryNotFound": ("file_not_found", "A file of the repository is missing on the Hub."),
}


class TransientError(Exception):
    """Worth retrying: dropped connection, stall, 408/429/5xx. `retry_after` comes from the server."""

    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.retry_after = retry_after


class RangeIgnored(Exception):
    """The server answered a ranged request with the whole body."""


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_for(status: int, headers: http.client.HTTPMessage | dict, what: str) -> Exception:
    """Map an HTTP answer to a transient or permanent error, the Hub's `X-Error-Code` first."""
    get = headers.get
    hub_code = get("X-Error-Code") or get("x-error-code")
    if hub_code in _ERROR_CODES:
        code, detail = _ERROR_CODES[hub_code]
        return DownloadError(f"{detail} ({what})", code, permanent=True)
    if status in (408, 429) or status >= 500:
        return TransientError(f"HTTP {status} for {what}", parse_retry_after(get("Retry-After")))
    if status in (401, 403):
        return DownloadError(f"The Hub refused the token (HTTP {status}) for {what}.", "unauthorized", permanent=True)
    if status == 404:
        return DownloadError(f"Not found on the Hub: {what}.", "file_not_found", permanent=True)
    return DownloadError(f"Unexpected HTTP {status} for {what}.", "download_failed", permanent=True)


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> "Origin":
        u = urlsplit(url)
        return cls(u.scheme, u.hostname or "", u.port or (443 if u.scheme == "https" else 80))


def target(url: str) -> str:
    u = urlsplit(url)
    return (u.path or "/") + (f"?{u.query}" if u.query else "")


class Connection:
    """A reusable connection to one origin, reopened after errors."""

    def __init__(self, origin: Origin, timeout: float, connect_timeout: float):
        self.origin = origin
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._conn: http.client.HTTPConnection | None = None

    def _open(self) -> http.client.HTTPConnection:
        if self.origin.scheme == "https":
            conn = http.client.HTTPSConnection(self.origin.host, self.origin.port, timeout=self.connect_timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.origin.host, self.origin.port, timeout=self.connect_timeout)
        conn.connect()
        conn.sock.settimeout(self.timeout)  # a recv that waits this long is a stall
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        return conn

    def request(self, method: str, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        if self._conn is None:
            self._conn = self._open()
        try:
            self._conn.request(method, target(url), headers={"User-Agent": USER_AGENT, **headers})
            return self._conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

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


def auth_headers(url: str, token: str | None, hub: Origin) -> dict[str, str]:
    """The token goes only to the Hub's own origin, never to a CDN it redirects to."""
    return {"Authorization": f"Bearer {token}"} if token and Origin.of(url) == hub else {}


def resolve_location(url: str, token: str | None, timeout: float, what: str, max_hops: int = 5) -> str:
    """Follow the Hub's redirects (resolve -> CDN) with HEAD, return the final byte URL."""
    hub = Origin.of(url)
    for _ in range(max_hops):
        origin = Origin.of(url)
        conn = Connection(origin, timeout, timeout)
        headers = {"Accept-Encoding": "identity", **auth_headers(url, token, hub)}
        try:
            resp = conn.request("HEAD", url, headers)
            resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise TransientError(f"{type(e).__name__} while resolving {what}: {e}") from e
        finally:
            conn.close()
        if resp.status in (301, 302, 303, 307, 308):
            loc = resp.getheader("Location")
            if not loc:
                raise DownloadError(f"Redirect without Location for {what}.", "download_failed", permanent=True)
            url = urljoin(url, loc)
            continue
        if resp.status == 200:
            return url
        raise error_for(resp.status, resp.headers, what)
    raise DownloadError(f"Too many redirects for {what}.", "download_failed", permanent=True)
