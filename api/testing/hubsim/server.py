"""HTTP side of the simulator: one handler class serving both the hub port and the CDN port."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import posixpath
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .faults import Fault
from .repos import FileEntry, Repo, Revision

if TYPE_CHECKING:
    from .sim import HubSim

log = logging.getLogger("hubsim")

_SENDFILE_CHUNK = 8 * 1024 * 1024  # small enough that served_bytes stays current mid-transfer
_COPY_CHUNK = 1024 * 1024
_DATE = "2024-01-01T00:00:00.000Z"


class HttpError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class Stats:
    """Per (repo, path) counters: body bytes sent, GETs that were answered (not redirected), HEADs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[str, str], list[int]] = {}

    def _row(self, key: tuple[str, str]) -> list[int]:
        row = self._data.get(key)
        if row is None:
            row = self._data[key] = [0, 0, 0]
        return row

    def add_bytes(self, key: tuple[str, str], n: int) -> None:
        with self._lock:
            self._row(key)[0] += n

    def count(self, key: tuple[str, str], method: str) -> None:
        with self._lock:
            self._row(key)[1 if method == "GET" else 2] += 1

    def get(self, key: tuple[str, str]) -> tuple[int, int, int]:
        with self._lock:
            row = self._data.get(key, (0, 0, 0))
            return row[0], row[1], row[2]

    def reset(self) -> None:
        with self._lock:
            self._data.clear()

    def snapshot(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        with self._lock:
            for (repo, path), (nbytes, gets, heads) in sorted(self._data.items()):
                out.setdefault(repo, {})[path] = {"served_bytes": nbytes, "requests": gets, "heads": heads}
        return out


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: "HubSim", role: str) -> None:
        self.sim = sim
        self.role = role  # "hub" or "cdn"
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, Handler)

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


def _file_item(entry: FileEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": entry.git_sha1, "size": entry.size, "path": entry.path}
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
    return item


def _dir_item(revision: Revision, path: str) -> dict[str, Any]:
    oid = hashlib.sha1(f"tree:{revision.commit}:{path}".encode()).hexdigest()
    return {"type": "directory", "oid": oid, "path": path}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubsim"
    server: SimServer

    # -- plumbing ---------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, delayed ACKs add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

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

    def _handle(self) -> None:
        self._headers_sent = False
        try:
            body = self._read_body()
            url = urlsplit(self.path)
            if self.server.role == "cdn":
                self._cdn(url)
            else:
                self._hub(url, body)
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
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        self._headers_sent = True

    def _send_json(self, status: int, obj: Any, headers: dict[str, Any] | None = None, effects: Fault | None = None) -> None:
        body = json.dumps(obj).encode()
        self._start(status, {"Content-Type": "application/json", "Content-Length": len(body), **(headers or {})})
        if self.command == "HEAD":
            return
        if effects is not None and effects.alters_bytes:
            self._copy_body(lambda off, n: body[off : off + n], 0, len(body), effects, None)
        else:
            self.wfile.write(body)

    def _send_error(self, e: HttpError) -> None:
        headers = dict(e.headers)
        if e.code:
            headers["X-Error-Code"] = e.code
            # Header values must be latin-1; paths in messages need not be.
            headers["X-Error-Message"] = e.message.encode("ascii", "backslashreplace").decode()
        self._send_json(e.status, {"error": e.message}, headers)

    def _status_fault(self, effects: Fault | None) -> None:
        """Apply the parts of a fault that happen before any answer: stall/drop on a bodiless
        response, and a replacement status."""
        if effects is None:
            return
        if self.command == "HEAD":
            if effects.stall_after is not None:
                time.sleep(effects.stall_seconds)
            if effects.drop_after is not None:
                self._drop()
                raise ConnectionAbortedError("fault: dropped before answering")
        if effects.status is not None:
            headers = {}
            if effects.retry_after is not None:
                headers["Retry-After"] = str(effects.retry_after)
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

    # -- bodies -----------------------------------------------------------------------------

    def _send_file(self, entry: FileEntry, key: tuple[str, str], headers: dict[str, Any], effects: Fault | None) -> None:
        size = entry.size
        start, end, status = 0, size, 200
        extra: dict[str, Any] = {}
        header = self.headers.get("Range")
        if header and not (effects and effects.ignore_range):
            parsed = parse_range(header, size)
            if parsed == "unsatisfiable":
                raise HttpError(416, None, "range not satisfiable", {"Content-Range": f"bytes */{size}"})
            if parsed is not None:
                start, end = parsed  # type: ignore[misc]
                status = 206
                extra["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self._start(
            status,
            {
                **headers,
                **extra,
                "Content-Type": "application/octet-stream",
                "Content-Length": end - start,
                "Accept-Ranges": "bytes",
            },
        )
        if self.command == "HEAD":
            return
        with open(entry.disk_path, "rb") as f:
            fd = f.fileno()
            if effects is not None and effects.alters_bytes:
                self._copy_body(lambda off, n: os.pread(fd, n, off), start, end, effects, key)
            else:
                self._sendfile(fd, start, end, key)

    def _sendfile(self, fd: int, start: int, end: int, key: tuple[str, str]) -> None:
        out = self.connection.fileno()
        stats = self.sim.stats
        pos = start
        while pos < end:
            # Counted before the send and corrected after: a client that has read the bytes
            # always finds them counted (no race between its reading and our bookkeeping).
            want = min(_SENDFILE_CHUNK, end - pos)
            stats.add_bytes(key, want)
            n = 0
            try:
                n = os.sendfile(out, fd, pos, want)
            finally:
                stats.add_bytes(key, n - want)
            if n == 0:
                raise ConnectionAbortedError("file shorter than announced")
            pos += n

    def _copy_body(
        self,
        read: Callable[[int, int], bytes],
        start: int,
        end: int,
        eff: Fault,
        key: tuple[str, str] | None,
    ) -> None:
        """The slow path for byte-altering faults. Offsets: corrupt_at is a position in the
        file; drop_after/stall_after count body bytes of this response."""
        stats = self.sim.stats
        rate = eff.rate_bps
        chunk = _COPY_CHUNK if rate is None else max(1, min(_COPY_CHUNK, rate // 20))  # ~20 writes/s keeps the cap smooth
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
            data = read(pos, n)
            if eff.corrupt_at is not None and pos <= eff.corrupt_at < pos + n:
                buf = bytearray(data)
                buf[eff.corrupt_at - pos] ^= 0xFF
                data = bytes(buf)
            if key is not None:
                stats.add_bytes(key, n)   # before the send, as in _sendfile
            try:
                self.connection.sendall(data)
            except BaseException:
                if key is not None:
                    stats.add_bytes(key, -n)
                raise
            pos += n
            sent += n
            if rate is not None:
                delay = began + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    # -- hub routes -------------------------------------------------------------------------

    def _hub(self, url: Any, body: bytes) -> None:
        segs = url.path.split("/")[1:]
        head = segs[0] if segs else ""
        if head == "_sim":
            return self._control(segs[1:], body)
        if head == "api":
            area = segs[1] if len(segs) > 1 else ""
            if area == "agent-harnesses":
                # 2.4.0 reads this as a registry object; a bare [] makes the `hf` CLI crash.
                return self._send_json(200, {"standardEnvVars": [], "harnesses": {}})
            if area == "telemetry":
                return self._send_json(200, {})
            if area == "models":
                return self._api_models(segs[2:], dict(parse_qsl(url.query)), body)
            raise HttpError(404, None, f"no such API route: {url.path}")
        return self._resolve(segs)

    def _split_repo(self, segs: list[str], markers: tuple[str, ...]) -> tuple[Repo | None, str, list[str]]:
        """Find the repo id at the start of raw path segments. Ids are usually org/name but may be
        a bare name; a known repo decides, otherwise the next marker does."""
        names = [unquote(s) for s in segs]
        store = self.sim.store
        if len(names) >= 2 and store.get(f"{names[0]}/{names[1]}"):
            return store.get(f"{names[0]}/{names[1]}"), f"{names[0]}/{names[1]}", segs[2:]
        if names and store.get(names[0]):
            return store.get(names[0]), names[0], segs[1:]
        if len(names) >= 2 and names[1] in markers:
            return None, names[0], segs[1:]
        return None, "/".join(names[:2]), segs[2:]

    def _check_access(self, repo: Repo) -> None:
        if repo.gated and self._token() not in self.sim.tokens:
            raise HttpError(
                401,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated to access it.",
            )

    @staticmethod
    def _pick_revision(repo: Repo, raw: list[str], need_rest: bool) -> tuple[Revision, str, list[str]]:
        """The revision is one quoted segment (refs%2Fpr%2F1), but accept it unquoted too."""
        if not raw or not raw[0]:
            raise HttpError(404, "RevisionNotFound", f"Invalid rev id: (empty) for {repo.repo_id}")
        for i in range(1, len(raw) + (0 if need_rest else 1)):
            rev = unquote("/".join(raw[:i]))
            found = repo.resolve(rev)
            if found is not None:
                return found, rev, raw[i:]
        raise HttpError(404, "RevisionNotFound", f"Invalid rev id: {unquote(raw[0])}")

    def _api_models(self, segs: list[str], query: dict[str, str], body: bytes) -> None:
        repo, repo_id, rest = self._split_repo(segs, ("revision", "tree", "paths-info"))
        effects = self.sim.faults.take("api", repo_id, None)
        self._status_fault(effects)
        if repo is None:
            raise HttpError(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
        self._check_access(repo)
        action = rest[0] if rest else ""
        if action in ("", "revision"):
            raw = rest[1:] if action else [quote(repo.default_ref, safe="")]
            revision, _, _ = self._pick_revision(repo, raw, need_rest=False)
            return self._send_json(200, self._info(repo, revision, _truthy(query.get("blobs"))), effects=effects)
        if action == "paths-info" and self.command == "POST":
            revision, _, _ = self._pick_revision(repo, rest[1:], need_rest=False)
            wanted = [v for k, v in parse_qsl(body.decode()) if k == "paths"]
            items = []
            for path in dict.fromkeys(p.strip("/") for p in wanted):
                if path in revision.files:
                    items.append(_file_item(revision.files[path]))
                elif path in revision.dirs:
                    items.append(_dir_item(revision, path))
            return self._send_json(200, items, effects=effects)
        if action == "tree":
            revision, rev, path_segs = self._pick_revision(repo, rest[1:], need_rest=False)
            path = unquote("/".join(path_segs)).strip("/")
            return self._tree(repo, revision, rev, path, query, effects)
        raise HttpError(404, None, f"no such API route: {self.path}")

    def _info(self, repo: Repo, revision: Revision, blobs: bool) -> dict[str, Any]:
        siblings = []
        for entry in revision.files.values():
            sib: dict[str, Any] = {"rfilename": entry.path}
            if blobs:
                sib.update(size=entry.size, blobId=entry.git_sha1)
                if entry.lfs:
                    sib["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
            siblings.append(sib)
        author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
        return {
            "_id": revision.commit[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": author,
            "sha": revision.commit,
            "lastModified": _DATE,
            "createdAt": _DATE,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in revision.files.values()),
        }

    def _tree(self, repo: Repo, revision: Revision, rev: str, path: str, query: dict[str, str], effects: Fault | None) -> None:
        if path and path not in revision.dirs:
            raise HttpError(404, "EntryNotFound", f"{path} does not exist on {rev}")
        recursive = _truthy(query.get("recursive"))

        def wanted(p: str) -> bool:
            if recursive:
                return not path or p.startswith(path + "/")
            return posixpath.dirname(p) == path

        entries = [_dir_item(revision, d) for d in revision.dirs if wanted(d)]
        entries += [_file_item(e) for e in revision.files.values() if wanted(e.path)]
        entries.sort(key=lambda e: e["path"])
        try:
            cursor = max(0, int(query.get("cursor") or 0))
        except ValueError:
            raise HttpError(400, None, "bad cursor") from None
        size = max(1, int(self.sim.tree_page_size))
        page = entries[cursor : cursor + size]
        headers = {}
        if cursor + size < len(entries):
            next_query = urlencode({**query, "cursor": str(cursor + size)})
            suffix = "/" + quote(path) if path else ""
            host = self.headers.get("Host") or f"{self.sim.host}:{self.sim.port}"
            link = f"http://{host}/api/models/{repo.repo_id}/tree/{quote(rev, safe='')}{suffix}?{next_query}"
            headers["Link"] = f'<{link}>; rel="next"'
        self._send_json(200, page, headers, effects)

    def _resolve(self, segs: list[str]) -> None:
        repo, repo_id, rest = self._split_repo(segs, ("resolve",))
        if not rest or rest[0] != "resolve":
            raise HttpError(404, None, f"not found: {self.path}")
        if repo is None:
            raise HttpError(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
        self._check_access(repo)
        revision, _, path_segs = self._pick_revision(repo, rest[1:], need_rest=True)
        path = unquote("/".join(path_segs))
        entry = revision.files.get(path)
        if entry is None:
            raise HttpError(404, "EntryNotFound", f"{path} does not exist on {revision.commit}")
        key = (repo.repo_id, path)
        kind = self.command.lower()
        common = {"X-Repo-Commit": revision.commit}
        if entry.lfs:
            # Like the real Hub: the hub answers with metadata and a redirect to another origin,
            # so the client drops the Authorization header and fetches bytes from the CDN.
            effects = self.sim.faults.take(kind, repo.repo_id, path, status_only=(kind == "get"))
            if kind == "get" and effects is not None:
                self.sim.stats.count(key, "GET")
            elif kind == "head":
                self.sim.stats.count(key, "HEAD")
            self._status_fault(effects)
            location = f"{self.sim.cdn_url}/cdn/{entry.sha256}?" + urlencode(
                {"repo": repo.repo_id, "path": path, "commit": revision.commit}
            )
            headers = {
                **common,
                "Location": location,
                "X-Linked-Etag": f'"{entry.sha256}"',
                "X-Linked-Size": entry.size,
                "ETag": f'"{entry.git_sha1}"',
                "Content-Length": 0,
            }
            self._start(302, headers)
            return
        effects = self.sim.faults.take(kind, repo.repo_id, path)
        self.sim.stats.count(key, self.command)
        self._status_fault(effects)
        self._send_file(entry, key, {**common, "ETag": f'"{entry.git_sha1}"'}, effects)

    # -- CDN --------------------------------------------------------------------------------

    def _cdn(self, url: Any) -> None:
        segs = url.path.split("/")[1:]
        if len(segs) != 2 or segs[0] != "cdn" or self.command not in ("GET", "HEAD"):
            raise HttpError(404, None, f"not found: {url.path}")
        sha256 = segs[1]
        query = dict(parse_qsl(url.query))
        entry: FileEntry | None = None
        repo = self.sim.store.get(query.get("repo", ""))
        if repo is not None:
            revision = repo.commits.get(query.get("commit", "")) or repo.resolve(repo.default_ref)
            if revision is not None:
                entry = revision.files.get(query.get("path", ""))
        if entry is None or entry.sha256 != sha256:
            entry = self.sim.store.by_sha256(sha256)
        if entry is None:
            raise HttpError(404, None, "no such object")
        repo_id = query.get("repo") or ""
        key = (repo_id, entry.path if not query.get("path") else query["path"])
        kind = self.command.lower()
        effects = self.sim.faults.take(kind, repo_id or None, key[1])
        self.sim.stats.count(key, self.command)
        self._status_fault(effects)
        self._send_file(entry, key, {"ETag": f'"{entry.sha256}"'}, effects)

    # -- control ----------------------------------------------------------------------------

    def _control(self, segs: list[str], body: bytes) -> None:
        what = segs[0] if segs else ""
        method = self.command
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            raise HttpError(400, None, "body is not JSON") from None
        sim = self.sim
        if what == "faults":
            if method == "GET":
                return self._send_json(200, [f.to_dict() for f in sim.faults.active()])
            if method == "DELETE":
                sim.clear_faults()
                return self._send_json(200, {"ok": True})
            if method == "POST":
                items = payload if isinstance(payload, list) else [payload] if payload else []
                try:
                    faults = [Fault.from_dict(item) for item in items]
                except (TypeError, ValueError) as e:
                    raise HttpError(400, None, f"bad fault: {e}") from None
                sim.set_faults(*faults)
                return self._send_json(200, {"ok": True, "faults": len(faults)})
        elif what == "stats" and method == "GET":
            return self._send_json(200, {"files": sim.stats.snapshot()})
        elif what == "reset" and method == "POST":
            sim.reset_counters()
            return self._send_json(200, {"ok": True})
        elif what == "config" and method == "POST":
            if isinstance(payload, dict) and "tree_page_size" in payload:
                sim.tree_page_size = int(payload["tree_page_size"])
            return self._send_json(200, {"tree_page_size": sim.tree_page_size})
        elif what == "repos":
            if method == "GET":
                return self._send_json(200, sim.describe())
            if method == "POST":
                return self._add_repo(payload)
        raise HttpError(404, None, f"no such control route: {method} {self.path}")

    def _add_repo(self, payload: Any) -> None:
        if not isinstance(payload, dict) or "repo_id" not in payload or not isinstance(payload.get("files"), dict):
            raise HttpError(400, None, 'expected {"repo_id": ..., "files": {...}}')
        files: dict[str, bytes | int] = {}
        for path, spec in payload["files"].items():
            if isinstance(spec, int) and not isinstance(spec, bool):
                files[path] = spec
            elif isinstance(spec, dict) and "text" in spec:
                files[path] = str(spec["text"]).encode()
            elif isinstance(spec, dict) and "base64" in spec:
                files[path] = base64.b64decode(spec["base64"])
            else:
                raise HttpError(400, None, f"{path}: expected a size, {{'text': ...}} or {{'base64': ...}}")
        try:
            commit = self.sim.add_repo(
                payload["repo_id"],
                files,
                gated=bool(payload.get("gated", False)),
                revision=payload.get("revision") or "main",
            )
        except (TypeError, ValueError) as e:
            raise HttpError(400, None, str(e)) from None
        self._send_json(200, {"repo_id": payload["repo_id"], "commit": commit})
