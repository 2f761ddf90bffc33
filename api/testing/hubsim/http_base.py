"""HTTP plumbing shared by the Hub and CDN sides: the server, responses, errors, file bodies."""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from .faults import Fault
from .repos import FileEntry

if TYPE_CHECKING:
    from .sim import HubSim

log = logging.getLogger("hubsim")

_SENDFILE_CHUNK = 8 * 1024 * 1024  # small enough that served_bytes stays current mid-transfer
_COPY_CHUNK = 1024 * 1024
_S3_CODES = {400: "InvalidRequest", 403: "AccessDenied", 404: "NoSuchKey", 405: "MethodNotAllowed",
             416: "InvalidRange", 429: "SlowDown"}


class HttpError(Exception):
    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        message_header: bool | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        # The Hub sends X-Error-Message with every coded error, and alone on some 401s.
        self.message_header = code is not None if message_header is None else message_header


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: "HubSim", role: str, handler: type, tls: ssl.SSLContext | None = None) -> None:
        self.sim = sim
        self.role = role  # "hub" or "cdn"
        self.tls = tls
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:
            # The handshake runs in the connection's own thread (Handler.setup), not here.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def close_connections(self) -> None:
        """Keep-alive connections outlive shutdown(); cut them so a stopped sim really is gone."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # clients hanging up mid-transfer is routine (and provoked on purpose)
        log.exception("hubsim: error while handling a request from %s", client_address)


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(start, end_exclusive), "unsatisfiable", or None when the header is unusable (serve 200)."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return max(0, size - n), size
        start = int(first)
        end = size - 1 if last == "" else min(int(last), size - 1)
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        return "unsatisfiable"
    return start, end + 1


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubsim"
    server: SimServer

    # -- plumbing ---------------------------------------------------------------------------

    def setup(self) -> None:
        if self.server.tls is not None:
            self.request.settimeout(15)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()
        # Headers and body go out in separate writes; without this, delayed ACKs add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)
        self.conn_id = self.sim.stats.connection(self.server.role)
        self._conn_free_at = 0.0  # per-connection pacing (Fault.conn_rate_bps)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sim.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    @property
    def sim(self) -> "HubSim":
        return self.server.sim

    @property
    def role(self) -> str:
        return self.server.role

    def _route(self, url: Any, body: bytes) -> None:
        raise NotImplementedError

    def _handle(self) -> None:
        self._headers_sent = False
        self._extra_headers: dict[str, str] = {}  # RateLimit headers of this Hub answer
        self._subject: tuple[str | None, str | None] | None = None  # (repo, file) for the log
        try:
            body = self._read_body()
            self._route(urlsplit(self.path), body)
        except HttpError as e:
            self._send_error(e)
        except OSError:
            self.close_connection = True
        except Exception:
            log.exception("hubsim: internal error on %s %s", self.command, self.path)
            if self._headers_sent:
                self.close_connection = True
            else:
                self._headers_buffer = []  # drop a half-built response
                self._send_error(HttpError(500, None, "internal simulator error"))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _start(self, status: int, headers: dict[str, Any]) -> None:
        if self._subject is not None:
            repo, path = self._subject
            self.sim.stats.log({
                "role": self.role, "method": self.command, "url": urlsplit(self.path).path, "repo": repo,
                "path": path, "status": status, "conn": self.conn_id, "range": self.headers.get("Range"),
                "time": time.time(),
            })
        self.send_response(status)
        for name, value in {**headers, **self._extra_headers}.items():
            self.send_header(name, str(value))
        self.end_headers()
        self._headers_sent = True

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, Any], effects: Fault | None = None) -> None:
        self._start(status, {"Content-Length": len(body), **headers})
        if self.command == "HEAD":
            return
        if effects is not None and effects.alters_bytes:
            self._pump(lambda off, n: body[off : off + n], None, 0, len(body), effects, None)
        else:
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, Any] | None = None, effects: Fault | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, effects)

    def _send_error(self, e: HttpError) -> None:
        headers = dict(e.headers)
        if self.role == "cdn":
            # S3 and CloudFront speak XML and know nothing of the Hub's error headers.
            code = e.code or _S3_CODES.get(e.status, "InternalError")
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{escape(code)}</Code><Message>{escape(e.message)}</Message></Error>"
            ).encode()
            return self._send_bytes(e.status, body, {"Content-Type": "application/xml", **headers})
        if e.code:
            headers["X-Error-Code"] = e.code
        if e.message_header:
            # Header values must be latin-1; paths in messages need not be.
            headers["X-Error-Message"] = e.message.encode("ascii", "backslashreplace").decode()
        self._send_json(e.status, {"error": e.message}, headers)

    def _status_fault(self, effects: Fault | None, bucket: str | None = None) -> None:
        """Apply the parts of a fault that happen before any answer: stall/drop on a bodiless
        response, a rate-limit window, and a replacement status."""
        if effects is None:
            return
        if self.command == "HEAD":
            if effects.stall_after is not None:
                time.sleep(effects.stall_seconds)
            if effects.drop_after is not None:
                self._drop()
                raise ConnectionAbortedError("fault: dropped before answering")
        headers = {}
        if effects.retry_after is not None:
            headers["Retry-After"] = str(effects.retry_after)
        if effects.ratelimit_window is not None and bucket is not None:
            self._extra_headers = self.sim.ratelimits.exhausted(bucket, effects.ratelimit_window)
            raise HttpError(429, None, f"You have exceeded our rate limit for {bucket}.", headers)
        if effects.status is not None:
            raise HttpError(effects.status, None, f"simulated HTTP {effects.status}", headers)

    def _drop(self) -> None:
        # A FIN rather than an RST: the client then reliably reads exactly the bytes sent so far.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None

    # -- file bodies ------------------------------------------------------------------------

    def _send_file(self, entry: FileEntry, key: tuple[str, str], headers: dict[str, Any], effects: Fault | None) -> None:
        size = entry.size
        start, end, status = 0, size, 200
        extra: dict[str, Any] = {}
        header = self.headers.get("Range")
        if header and not (effects and effects.ignore_range):
            parsed = parse_range(header, size)
            if parsed == "unsatisfiable":
                raise HttpError(416, None, "The requested range is not satisfiable", {"Content-Range": f"bytes */{size}"})
            if parsed is not None:
                start, end = parsed  # type: ignore[misc]
                status = 206
                extra["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self._start(
            status,
            {**headers, **extra, "Content-Type": "application/octet-stream", "Content-Length": end - start, "Accept-Ranges": "bytes"},
        )
        if self.command == "HEAD":
            return
        with open(entry.disk_path, "rb") as f:
            fd = f.fileno()
            self._pump(lambda off, n: os.pread(fd, n, off), fd, start, end, effects, key)

    def _pump(
        self,
        read: Callable[[int, int], bytes],
        fd: int | None,
        start: int,
        end: int,
        eff: Fault | None,
        key: tuple[str, str] | None,
    ) -> None:
        """Send [start, end) of a body. With no fault and no TLS it goes out by sendfile in large
        chunks; faults pace, stall, cut or corrupt it. Offsets: corrupt_at is a position in the
        file; drop_after/stall_after count body bytes of this response."""
        eff = eff or Fault()
        stats = self.sim.stats
        rates = [r for r in (eff.rate_bps, eff.conn_rate_bps) if r]
        # ~20 writes/s keep a cap smooth.
        chunk = max(1, min(_COPY_CHUNK, min(rates) // 20)) if rates else _SENDFILE_CHUNK
        use_sendfile = fd is not None and self.server.tls is None
        if not use_sendfile:
            chunk = min(chunk, _COPY_CHUNK)
        pos, sent = start, 0
        stalled = False
        began = time.monotonic()
        while pos < end:
            if eff.stall_after is not None and not stalled and sent >= eff.stall_after:
                stalled = True
                time.sleep(eff.stall_seconds)
                began += eff.stall_seconds  # a stall is not credit for a burst afterwards
            if eff.drop_after is not None and sent >= eff.drop_after:
                self._drop()
                return
            n = min(chunk, end - pos)
            if eff.stall_after is not None and not stalled:
                n = min(n, eff.stall_after - sent)
            if eff.drop_after is not None:
                n = min(n, eff.drop_after - sent)
            if eff.conn_rate_bps:
                delay = self._conn_free_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            t_send = time.monotonic()
            corrupt = eff.corrupt_at is not None and pos <= eff.corrupt_at < pos + n
            if key is not None:
                # Counted before the send and corrected after: a client that has read the bytes
                # always finds them counted (no race between its reading and our bookkeeping).
                stats.add_bytes(key, n)
            done = 0
            try:
                if use_sendfile and not corrupt:
                    done = os.sendfile(self.connection.fileno(), fd, pos, n)  # type: ignore[arg-type]
                else:
                    data = read(pos, n)
                    if corrupt:
                        buf = bytearray(data)
                        buf[eff.corrupt_at - pos] ^= 0xFF  # type: ignore[operator]
                        data = bytes(buf)
                    self.connection.sendall(data)
                    done = len(data)
            finally:
                if key is not None and done != n:
                    stats.add_bytes(key, done - n)
            if done == 0:
                raise ConnectionAbortedError("file shorter than announced")
            pos += done
            sent += done
            if eff.conn_rate_bps:
                self._conn_free_at = max(self._conn_free_at, t_send) + done / eff.conn_rate_bps
            if eff.rate_bps:
                delay = began + sent / eff.rate_bps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
