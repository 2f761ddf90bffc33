"""One blob's transfer: parallel ranged parts, persisted part progress, hashing as bytes land.

Like Ollama's `server/download.go`, a transfer is an object (size, completed, parts, done/error)
kept in a registry by blob key, so a second job that wants the same blob joins the running
transfer instead of fetching it again. Part offsets are saved beside the `.part` file often
enough that a `kill -9` loses less than half a part of fetched bytes.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from tenacity import Retrying, retry_if_exception_type, wait_random_exponential

from ..errors import DownloadError
from .bandwidth import JobThrottle
from .http import Connection, Origin, RangeIgnored, TransientError, auth_headers, error_for, resolve_location

log = logging.getLogger(__name__)
BUF_SIZE = 1 << 20
HASH_BUF = 8 << 20


def _lower_priority() -> None:
    """Download threads yield the CPU to the event loop when both cores are busy (Linux: nice is
    per thread). Best effort: without permission it stays as it is."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (OSError, AttributeError):
        pass


class Aborted(Exception):
    """Every job that wanted this blob let go of it (pause or cancel); progress is saved."""


@dataclass(frozen=True)
class BlobSpec:
    key: str          # the cache's blob name: sha256 for LFS files, git blob sha1 otherwise
    size: int
    url: str          # the Hub's resolve URL (it may redirect to a CDN)
    lfs: bool
    what: str         # "org/name@commit:path", for logs and error messages


@dataclass(frozen=True)
class TransferOptions:
    connections: int = 8
    part_size: int = 64 << 20
    stall_timeout: float = 30.0
    connect_timeout: float = 15.0
    max_retries: int = 8
    backoff_max: float = 30.0
    token: str | None = None
    on_bytes: Callable[[int], None] | None = None   # metrics hook
    slots: threading.Semaphore | None = None        # connections shared by every transfer of the process
    throttle: JobThrottle | None = None            # bandwidth limits (bandwidth.py)


def new_hasher(spec: BlobSpec):
    if spec.lfs:
        return hashlib.sha256()
    h = hashlib.sha1()
    h.update(b"blob %d\0" % spec.size)
    return h


def hash_file(path: Path, spec: BlobSpec) -> str:
    h = new_hasher(spec)
    buf = bytearray(HASH_BUF)
    mv = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(mv[:n])
    return h.hexdigest()


@dataclass
class Part:
    start: int
    end: int          # exclusive
    done: int = 0     # bytes written from start

    @property
    def remaining(self) -> int:
        return self.end - self.start - self.done


@dataclass
class _Budget:
    """Retry budget per part that refills whenever the part makes progress."""
    part: Part
    max_retries: int
    backoff_max: float
    _seen: int = -1
    _base: int = 0
    _wait: wait_random_exponential = field(init=False)

    def __post_init__(self):
        self._wait = wait_random_exponential(multiplier=0.5, max=self.backoff_max)

    def _since_progress(self, attempt: int) -> int:
        if self.part.done != self._seen:
            self._seen, self._base = self.part.done, attempt - 1
        return attempt - self._base

    def stop(self, state) -> bool:
        return self._since_progress(state.attempt_number) > self.max_retries

    def wait(self, state) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, 300.0) + 0.1
        return self._wait(SimpleNamespace(attempt_number=self._since_progress(state.attempt_number)))


class BlobTransfer:
    def __init__(self, spec: BlobSpec, staging: Path, opts: TransferOptions):
        self.spec = spec
        self.opts = opts
        self.data_path = staging / f"{spec.key}.part"
        self.state_path = staging / f"{spec.key}.json"
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.retries = 0
        self.refetched_after_mismatch = False
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._parts: list[Part] = []
        self._epoch = 0
        self._hashed = 0          # where the hasher is; parts before it are the ones it waits for
        self._conns: set[Connection] = set()
        self._persisted_at = 0.0
        self._unpersisted = 0
        self.holders = 0

    # -- progress -------------------------------------------------------------------------------
    @property
    def completed(self) -> int:
        with self._lock:
            return sum(p.done for p in self._parts)

    def _frontier(self) -> int:
        pos = 0
        for p in self._parts:
            pos += p.done
            if p.remaining:
                break
        return pos

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._run, name=f"blob-{self.spec.key[:12]}", daemon=True).start()

    def abort(self) -> None:
        self._abort.set()
        with self._cond:
            self._cond.notify_all()
            conns = list(self._conns)
        for c in conns:
            c.abort()

    @property
    def aborting(self) -> bool:
        return self._abort.is_set()

    def _run(self) -> None:
        _lower_priority()
        try:
            self._download_verified()
        except BaseException as e:  # noqa: BLE001 - handed to the waiting jobs
            self.error = e
        finally:
            self.done.set()

    def _download_verified(self) -> None:
        for attempt in (1, 2):
            digest = self._download()
            if digest == self.spec.key:
                return  # the state file stays until every job has linked the blob (see release)
            log.warning("blob %s: checksum mismatch for %s (attempt %d)", self.spec.key[:12], self.spec.what, attempt)
            self.discard()
            self.refetched_after_mismatch = True
        raise DownloadError(
            f"{self.spec.what}: the bytes served do not match the expected checksum, twice.",
            "integrity_error", permanent=True)

    # -- state on disk --------------------------------------------------------------------------
    def _load_parts(self) -> None:
        size, ps = self.spec.size, self.opts.part_size
        parts = [Part(s, min(s + ps, size)) for s in range(0, size, ps)] or [Part(0, 0)]
        try:
            state = json.loads(self.state_path.read_text())
            if (state.get("size") == size and state.get("part_size") == ps and self.data_path.exists()
                    and self.data_path.stat().st_size == size and len(state["done"]) == len(parts)):
                for p, d in zip(parts, state["done"]):
                    p.done = max(0, min(int(d), p.end - p.start))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self._parts = parts

    def _persist(self, force: bool = False) -> None:
        """Save part offsets; called with the lock held. Offsets only ever lag the bytes on disk."""
        now = time.monotonic()
        if not force and self._unpersisted < max(self.opts.part_size // 2, 1 << 20) and now - self._persisted_at < 0.5:
            return
        data = json.dumps({"size": self.spec.size, "part_size": self.opts.part_size,
                           "key": self.spec.key, "what": self.spec.what,
                           "done": [p.done for p in self._parts]})
        tmp = self.state_path.with_suffix(".json.tmp")
        try:
            tmp.write_text(data)
            os.replace(tmp, self.state_path)
        except OSError as e:
            log.warning("blob %s: cannot save part state: %s", self.spec.key[:12], e)
        self._persisted_at, self._unpersisted = now, 0

    def _drop_state(self) -> None:
        self.state_path.unlink(missing_ok=True)

    def discard(self) -> None:
        self.data_path.unlink(missing_ok=True)
        self._drop_state()

    # -- the transfer ---------------------------------------------------------------------------
    def _download(self) -> str:
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._load_parts()
        fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != self.spec.size:
                os.ftruncate(fd, self.spec.size)
                try:
                    os.posix_fallocate(fd, 0, self.spec.size)  # claim the space now, fail early if none
                except OSError as e:
                    if e.errno == 28:
                        raise DownloadError("No space left for " + self.spec.what, "insufficient_storage",
                                            permanent=True) from e
            url = ""
            if any(p.remaining for p in self._parts):
                url = self._with_retries(Part(0, 0), lambda: resolve_location(
                    self.spec.url, self.opts.token, self.opts.connect_timeout, self.spec.what))
            return self._fetch_all(fd, url)
        finally:
            os.close(fd)

    def _fetch_all(self, fd: int, url: str) -> str:
        failure: list[BaseException] = []
        queue = deque(p for p in self._parts if p.remaining)
        single = [False]

        def worker() -> None:
            _lower_priority()
            conn = Connection(Origin.of(url), self.opts.stall_timeout, self.opts.connect_timeout)
            with self._lock:
                self._conns.add(conn)
            buf = bytearray(BUF_SIZE)
            try:
                while not failure and not self._abort.is_set():
                    if not self._take_slot():
                        continue
                    try:
                        with self._lock:
                            if not queue:
                                return
                            part = queue.popleft()
                        self._with_retries(part, lambda: self._fetch_part(conn, url, fd, part, buf, single[0]))
                    except RangeIgnored:
                        with self._cond:
                            if not single[0]:
                                # The server cannot do ranges: one stream from byte 0, like curl would.
                                single[0] = True
                                queue.clear()
                                self._parts = [Part(0, self.spec.size)]
                                self._epoch += 1
                                queue.append(self._parts[0])
                                self._cond.notify_all()
                    except BaseException as e:  # noqa: BLE001 - one failed part stops the others
                        failure.append(e)
                        self.abort()
                        return
                    finally:
                        if self.opts.slots is not None:
                            self.opts.slots.release()
            finally:
                conn.close()
                with self._cond:
                    self._conns.discard(conn)
                    self._cond.notify_all()

        n = max(1, min(self.opts.connections, len(queue)))
        threads = [threading.Thread(target=worker, name=f"part-{self.spec.key[:8]}-{i}", daemon=True)
                   for i in range(n)]
        for t in threads:
            t.start()
        try:
            digest = self._hash_following(fd, threads)
        finally:
            for t in threads:
                t.join()
            with self._lock:
                self._persist(force=True)
        real = [e for e in failure if not isinstance(e, Aborted)]
        if real:
            raise real[0]
        if self._abort.is_set() or digest is None:
            raise Aborted(self.spec.what)
        return digest

    def _take_slot(self) -> bool:
        """A process-wide connection slot: many parallel downloads share a fixed number of busy
        threads, which keeps the GIL (and so the API's answers) available."""
        return self.opts.slots is None or self.opts.slots.acquire(timeout=0.2)

    def _hash_following(self, fd: int, threads: list[threading.Thread]) -> str | None:
        """Hash the contiguous prefix as it grows, so verification ends soon after the last byte."""
        buf = bytearray(HASH_BUF)
        mv = memoryview(buf)
        epoch, pos, h = -1, 0, None
        while True:
            with self._cond:
                if self._epoch != epoch:
                    epoch, pos, h = self._epoch, 0, new_hasher(self.spec)
                    self._hashed = 0
                frontier = self._frontier()
                if frontier <= pos:
                    if pos >= self.spec.size:
                        return h.hexdigest()
                    if self._abort.is_set() or not any(t.is_alive() for t in threads):
                        return None
                    self._cond.wait(0.2)
                    continue
            while pos < frontier:
                n = os.preadv(fd, [mv[:min(HASH_BUF, frontier - pos)]], pos)
                if n <= 0:
                    break
                h.update(mv[:n])
                pos += n
            self._hashed = pos

    def _with_retries(self, part: Part, fn):
        budget = _Budget(part, self.opts.max_retries, self.opts.backoff_max)

        def before_sleep(state) -> None:
            self.retries += 1
            exc = state.outcome.exception()
            log.info("blob %s: retrying %s after %s", self.spec.key[:12], self.spec.what, exc)

        def sleep(seconds: float) -> None:
            if self._abort.wait(seconds):
                raise Aborted(self.spec.what)

        retrying = Retrying(
            retry=retry_if_exception_type((TransientError, OSError, http.client.HTTPException)),
            stop=budget.stop, wait=budget.wait, sleep=sleep, before_sleep=before_sleep, reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    if self._abort.is_set():
                        raise Aborted(self.spec.what)
                    return fn()
        except (TransientError, OSError, http.client.HTTPException) as e:
            if self._abort.is_set():
                raise Aborted(self.spec.what) from e
            raise DownloadError(f"{self.spec.what}: giving up after {self.opts.max_retries} retries "
                                f"without progress ({e}).", "network_error") from e

    def _report(self, n: int) -> None:
        if n and self.opts.on_bytes:
            self.opts.on_bytes(n)

    def _fetch_part(self, conn: Connection, url: str, fd: int, part: Part, buf: bytearray, single: bool) -> None:
        if not part.remaining:
            return
        start = part.start + part.done
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{part.end - 1}",
                   **auth_headers(url, self.opts.token, Origin.of(self.spec.url))}
        resp = conn.request("GET", url, headers)
        unreported = 0
        try:
            if resp.status == 200 and start > 0:
                if not single:
                    raise RangeIgnored()
                with self._lock:   # whole body again from byte 0
                    part.done = 0
                    self._epoch += 1
                start = 0
            elif resp.status not in (200, 206):
                resp.read()
                raise error_for(resp.status, resp.headers, self.spec.what)
            pos = start
            while part.remaining:
                if self._abort.is_set():
                    raise Aborted(self.spec.what)
                # read1, not readinto: readinto blocks until the whole buffer is full, so on a stall
                # or a kill up to BUF_SIZE bytes per connection that already arrived were lost.
                want = min(len(buf), part.remaining)
                if self.opts.throttle is not None:
                    want = self.opts.throttle.read_size(want)
                data = resp.read1(want)
                n = len(data)
                if not n:
                    raise TransientError(f"connection closed early for {self.spec.what}")
                if self.opts.throttle is not None:
                    self.opts.throttle(n, self._abort)
                os.pwrite(fd, data, pos)
                pos += n
                with self._cond:
                    part.done += n
                    self._unpersisted += n
                    self._persist()
                    if part.start <= self._hashed:   # only bytes at the hashed frontier wake the hasher
                        self._cond.notify_all()
                unreported += n
                if unreported >= 8 << 20 or not part.remaining:
                    self._report(unreported)
                    unreported = 0
        except BaseException:
            self._report(unreported)
            conn.close()
            raise
        if resp.status == 200 or resp.length:  # leftover body (ranges beyond the part): don't reuse
            conn.close()


class TransferRegistry:
    """Running transfers by blob key; a job joins a running transfer instead of starting its own."""

    def __init__(self, staging: Path, max_connections: int | None = None):
        self.staging = staging
        self.slots = threading.BoundedSemaphore(max_connections) if max_connections else None
        self._lock = threading.Lock()
        self._running: dict[str, BlobTransfer] = {}

    def acquire(self, spec: BlobSpec, opts: TransferOptions) -> BlobTransfer:
        while True:
            with self._lock:
                t = self._running.get(spec.key)
                if t is None or (t.done.is_set() and t.error is not None):
                    t = BlobTransfer(spec, self.staging, opts)
                    self._running[spec.key] = t
                    t.holders += 1
                    t.start()
                    return t
                if not t.aborting:
                    t.holders += 1
                    return t
            t.done.wait(5)   # an aborting transfer is saving its state; then start afresh

    def release(self, t: BlobTransfer) -> None:
        with self._lock:
            t.holders -= 1
            if t.holders > 0:
                return
            if self._running.get(t.spec.key) is t:
                del self._running[t.spec.key]
        if not t.done.is_set():
            t.abort()
            t.done.wait(30)
        elif t.error is None:
            t.discard()  # every holder has linked the verified blob into its repo

    def running(self) -> list[BlobTransfer]:
        with self._lock:
            return list(self._running.values())
