"""One blob's transfer: parallel ranged parts, persisted part progress, hashing as bytes land.

Like Ollama's `server/download.go`, a transfer is an object (size, completed, parts, done/error)
kept in a registry by blob key, so a second job that wants the same blob joins the running
transfer instead of fetching it again. Part offsets are saved beside the `.part` file often
enough that a `kill -9` loses less than half a part of fetched bytes.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type

from ..errors import DownloadError
from .bandwidth import TokenBucket
from .blob import Aborted, BlobSpec, Part, TransferOptions, TransferState, lower_priority
from .hashing import MappedFile, new_hasher
from .http import Connection
from .location import SharedLocation, resolve
from .remote import RemoteTransfer, TransferProcess
from .responses import Reissue, TransientError
from .retry import Budget
from .workers import PartPool

log = logging.getLogger(__name__)
BUF_SIZE = 1 << 20


class BlobTransfer(TransferState):
    def __init__(self, spec: BlobSpec, staging: Path, opts: TransferOptions):
        super().__init__(spec, staging, opts)
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
        self._pool: PartPool | None = None
        self.location = SharedLocation(lambda: resolve(
            spec.url, opts.token, opts.hubs, opts.connect_timeout, spec.what, spec.page), spec.what, spec.size)

    # -- progress -------------------------------------------------------------------------------
    @property
    def completed(self) -> int:
        with self._lock:
            return sum(p.done for p in self._parts)

    @property
    def connections_peak(self) -> int:
        pool = self._pool
        return pool.policy.peak if pool is not None else 0

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
        lower_priority()
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
            if any(p.remaining for p in self._parts):
                self._with_retries(Part(0, 0), self.location.get)   # one resolve before the parts start
            pool = PartPool(self, fd)
            self._pool = pool
            try:
                digest = self._hash_following(fd, pool)
            finally:
                pool.join()
                with self._lock:
                    self._persist(force=True)
            real = [e for e in pool.failure if not isinstance(e, Aborted)]
            if real:
                raise real[0]
            if self._abort.is_set() or digest is None:
                raise Aborted(self.spec.what)
            return digest
        finally:
            os.close(fd)

    def _hash_following(self, fd: int, pool: "PartPool") -> str | None:
        """Hash the contiguous prefix as it grows, so verification ends soon after the last byte.
        The same loop steers the pool (connections, stragglers) about twice a second."""
        with MappedFile(fd, self.spec.size) as mapped:
            return self._hash_loop(mapped, pool)

    def _hash_loop(self, mapped: MappedFile, pool: "PartPool") -> str | None:
        epoch, pos, h = -1, 0, None
        steer_at = 0.0
        while True:
            now = time.monotonic()
            if now >= steer_at:
                pool.steer(now)
                steer_at = now + 0.5
            with self._cond:
                if self._epoch != epoch:
                    epoch, pos, h = self._epoch, 0, new_hasher(self.spec)
                    self._hashed = 0
                frontier = self._frontier()
                if frontier <= pos:
                    if pos >= self.spec.size:
                        return h.hexdigest()
                    if self._abort.is_set() or not pool.alive():
                        return None
                    self._cond.wait(0.2)
                    continue
            mapped.update(h, pos, frontier)
            pos = self._hashed = frontier

    def _with_retries(self, part: Part, fn):
        budget = Budget(part, self.opts.max_retries, self.opts.backoff_max)
        pending: list[tuple[float, str] | None] = [None]

        def before_sleep(state) -> None:
            exc = state.outcome.exception()
            if not isinstance(exc, Reissue):
                self.retries += 1
                log.info("blob %s: retrying %s after %s", self.spec.key[:12], self.spec.what, exc)
            reason = getattr(exc, "reason", None)
            pending[0] = (time.time() + state.next_action.sleep, reason) if reason else None

        def sleep(seconds: float) -> None:
            self.waiting = pending[0]
            try:
                if self._abort.wait(seconds):
                    raise Aborted(self.spec.what)
            finally:
                self.waiting = None

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

    def report(self, n: int) -> None:
        if n and self.opts.on_bytes:
            self.opts.on_bytes(n)



class TransferRegistry:
    """Running transfers by blob key; a job joins a running transfer instead of starting its own."""

    def __init__(self, staging: Path, max_connections: int | None = None, in_child: bool = False,
                 bandwidth: TokenBucket | None = None):
        self.staging = staging
        self.slots = threading.BoundedSemaphore(max_connections) if max_connections else None
        # TRANSFER_PROCESS: the transfers run in a child process (api/download/remote.py), which
        # mirrors the process-wide bandwidth bucket.
        self.process = TransferProcess(staging, max_connections or 16, bandwidth) if in_child else None
        if self.process is not None:
            self.process.prestart()
        self._lock = threading.Lock()
        self._running: dict[str, BlobTransfer] = {}

    def acquire(self, spec: BlobSpec, opts: TransferOptions) -> BlobTransfer:
        while True:
            with self._lock:
                t = self._running.get(spec.key)
                if t is None or (t.done.is_set() and t.error is not None):
                    t = (BlobTransfer(spec, self.staging, opts) if self.process is None
                         else RemoteTransfer(spec, self.staging, opts, self.process))
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

    def close(self) -> None:
        if self.process is not None:
            self.process.close()
