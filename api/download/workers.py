"""The worker threads of one blob transfer: each takes the next part, GETs its range from the
blob's shared location and writes it in place; the pool grows and re-issues stragglers as
api/download/adaptive.py decides."""
from __future__ import annotations

import http.client
import os
import re
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from ..errors import DownloadError
from .adaptive import ConnectionPolicy, Running
from .blob import Aborted, Part, lower_priority
from .body import BodyWriter, SplicePipe
from .http import Connection, Origin, auth_headers, finish
from .responses import EXPIRED_STATUSES, RangeIgnored, Reissue, TransientError, error_for

if TYPE_CHECKING:
    from .transfer import BlobTransfer

BUF_SIZE = 1 << 20
REPORT_EVERY = 8 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class PartPool:
    def __init__(self, t: "BlobTransfer", fd: int):
        self.t = t
        self.fd = fd
        self.failure: list[BaseException] = []
        self.queue: deque[Part] = deque(p for p in t._parts if p.remaining)
        self.single = False
        self.policy = ConnectionPolicy(t.opts.connections, t.opts.max_connections)
        self.running: dict[int, Running] = {}
        self.workers = 0
        self._threads: list[threading.Thread] = []
        self._spawn(min(self.policy.target, len(self.queue)) or 1)

    # -- the pool -------------------------------------------------------------------------------
    def _spawn(self, n: int) -> None:
        with self.t._lock:
            self.workers += n
        for _ in range(n):
            th = threading.Thread(target=self._worker, name=f"part-{self.t.spec.key[:8]}", daemon=True)
            self._threads.append(th)
            th.start()

    def alive(self) -> bool:
        return self.workers > 0   # read under the transfer's lock by its caller

    def join(self) -> None:
        for th in list(self._threads):
            th.join()

    def steer(self, now: float) -> None:
        """More connections while throughput still rises; a fresh connection for a straggler."""
        t = self.t
        with t._lock:
            running = list(self.running.values())
            usable = len(self.queue) + len(running)
            total = sum(p.done for p in t._parts)
            workers = self.workers
        if t._abort.is_set() or self.failure or not workers:
            return
        want = min(self.policy.grow(now, total, usable), usable)
        if want > workers:
            self._spawn(want - workers)
        for r in self.policy.stragglers(now, running):
            r.reissue = True
            r.conn.abort()

    def _worker(self) -> None:
        lower_priority()
        t = self.t
        box: list[Connection | None] = [None]
        pipe = SplicePipe()
        counted = True
        try:
            while not self.failure and not t._abort.is_set():
                with t._lock:
                    if self.workers > max(self.policy.target, 1):
                        self.workers -= 1   # the pool shrank: this worker leaves between parts
                        counted = False
                        return
                if not self._take_slot():
                    continue
                try:
                    with t._lock:
                        if not self.queue:
                            return
                        part = self.queue.popleft()
                    t._with_retries(part, lambda: self._fetch_part(box, part, pipe))
                except RangeIgnored:
                    self._single_stream()
                except BaseException as e:  # noqa: BLE001 - one failed part stops the others
                    self.failure.append(e)
                    t.abort()
                    return
                finally:
                    if t.opts.slots is not None:
                        t.opts.slots.release()
        finally:
            pipe.close()
            if box[0] is not None:
                box[0].close()
            with t._cond:
                self.workers -= counted
                t._conns.discard(box[0])
                t._cond.notify_all()

    def _take_slot(self) -> bool:
        """A process-wide connection slot: many parallel downloads share a fixed number of busy
        threads, which keeps the GIL (and so the API's answers) available."""
        slots = self.t.opts.slots
        return slots is None or slots.acquire(timeout=0.2)

    def _single_stream(self) -> None:
        """The server cannot do ranges: one stream from byte 0, like curl would."""
        t = self.t
        with t._cond:
            if not self.single:
                self.single = True
                self.queue.clear()
                t._parts = [Part(0, t.spec.size)]
                t._epoch += 1
                self.queue.append(t._parts[0])
                t._cond.notify_all()

    def _connection(self, box: list[Connection | None], url: str) -> Connection:
        origin = Origin.of(url)
        conn = box[0]
        if conn is None or conn.origin != origin:   # a refreshed URL may live on another host
            t = self.t
            with t._lock:
                t._conns.discard(conn)
            if conn is not None:
                conn.close()
            conn = box[0] = Connection(origin, t.opts.stall_timeout, t.opts.connect_timeout)
            with t._lock:
                t._conns.add(conn)
        return conn

    # -- one request ----------------------------------------------------------------------------
    def _fetch_part(self, box: list[Connection | None], part: Part, pipe: SplicePipe) -> None:
        if not part.remaining:
            return
        t, spec = self.t, self.t.spec
        loc, generation = t.location.get()
        conn = self._connection(box, loc.url)
        start = part.start + part.done
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{part.end - 1}",
                   **auth_headers(loc.url, t.opts.token, t.opts.hubs)}
        run = Running(part, conn, time.monotonic(), part.done)
        with t._lock:
            self.running[id(part)] = run
        unreported = 0
        try:
            resp = conn.request("GET", loc.url, headers)
            if resp.status not in (200, 206):
                resp.read()
                if not loc.hub and resp.status in EXPIRED_STATUSES:
                    t.location.refused(generation, resp.status)   # re-resolves, or raises a refusal
                    raise Reissue(f"the signed URL of {spec.what} expired (HTTP {resp.status})")
                raise error_for(resp.status, resp.headers, spec.what, spec.page)
            if resp.status == 200 and start > 0:
                if not self.single:
                    raise RangeIgnored()
                with t._lock:   # whole body again from byte 0
                    part.done = 0
                    t._epoch += 1
                start = 0
            self._check_size(resp, start)
            t.location.served(generation)
            pos = start
            body = BodyWriter(resp, conn.sock, self.fd, pipe, t.opts.stall_timeout)
            while part.remaining:
                if t._abort.is_set():
                    raise Aborted(spec.what)
                # What has arrived, never a full buffer: waiting for one would lose up to BUF_SIZE
                # bytes per connection that already arrived on a stall or a kill.
                want = min(BUF_SIZE, part.remaining)
                throttle = t.opts.throttle
                if throttle is not None:
                    want = throttle.read_size(want)   # small reads keep the shared bucket smooth
                n = body.write(pos, want)
                if not n:
                    raise TransientError(f"connection closed early for {spec.what}")
                if throttle is not None:
                    throttle(n, t._abort)             # waits for the bandwidth bucket, stops on abort
                pos += n
                with t._cond:
                    part.done += n
                    t._unpersisted += n
                    t._persist()
                    if part.start <= t._hashed:   # only bytes at the hashed frontier wake the hasher
                        t._cond.notify_all()
                unreported += n
                if unreported >= REPORT_EVERY or not part.remaining:
                    t.report(unreported)
                    unreported = 0
            if resp.status == 200 and resp.length:
                conn.close()   # the rest of a whole-file answer is not wanted
            else:
                finish(resp, conn)
            self.policy.finished(run, time.monotonic())
        except BaseException as e:
            t.report(unreported)
            conn.close()
            if run.reissue and isinstance(e, (OSError, http.client.HTTPException, TransientError)):
                raise Reissue(f"{spec.what}: a straggling part goes on over a fresh connection") from e
            raise
        finally:
            with t._lock:
                self.running.pop(id(part), None)

    def _check_size(self, resp: http.client.HTTPResponse, start: int) -> None:
        """The first ranged GET is the CDN's validation: its total must be the tree's size."""
        size, what = self.t.spec.size, self.t.spec.what
        if resp.status == 206:
            cr = (resp.getheader("Content-Range") or "").strip()
            m = _CONTENT_RANGE.fullmatch(cr)
            ok = m is not None and int(m[3]) == size and int(m[1]) == start
            got = cr or "no Content-Range"
        else:
            ok = resp.length is None or resp.length == size
            got = f"Content-Length {resp.length}"
        if not ok:
            raise DownloadError(f"{what}: the server answered {got} where the Hub's tree says {size} bytes "
                                f"starting at byte {start}.", "size_mismatch", permanent=True)
