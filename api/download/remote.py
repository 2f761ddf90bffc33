"""Blob transfers in a child process, so the API's interpreter keeps its GIL for answering.

Receiving, writing and hashing gigabytes is CPU work in Python threads; in the API's own process
it competes with the event loop for the GIL and the progress routes' p99 suffers. With
`TRANSFER_PROCESS=true` one child process (`python -m api.download.remote`, started on the first
download) runs every `BlobTransfer`; the parent keeps the registry and a `RemoteTransfer` per blob
that mirrors the child's progress, reported four times a second over a socket pair. The
bandwidth limits travel the other way: the child keeps a copy of the process-wide bucket (every
rate change is sent to it) and one bucket per job that has `max_bps`, so the limits hold for
transfers in the child exactly as for threads in the API. When the
parent dies the socket closes and the child exits at once, as if killed with it; the part files
and offsets on disk stay the resume state, exactly as in-process.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace

from ..errors import DownloadError
from .bandwidth import JobThrottle, TokenBucket
from .blob import Aborted, BlobSpec, TransferOptions, TransferState

log = logging.getLogger(__name__)
REPORT_EVERY = 0.25


def _error_out(e: BaseException | None) -> tuple | None:
    if e is None:
        return None
    if isinstance(e, DownloadError):
        return ("download", e.detail, e.code, e.permanent)
    if isinstance(e, Aborted):
        return ("aborted", str(e))
    return ("other", f"{type(e).__name__}: {e}")


def _error_in(err: tuple | None) -> BaseException | None:
    if err is None:
        return None
    if err[0] == "download":
        return DownloadError(err[1], err[2], permanent=err[3])
    if err[0] == "aborted":
        return Aborted(err[1])
    return DownloadError(f"The transfer failed: {err[1]}.", "internal_error", permanent=True)


class RemoteTransfer(TransferState):
    """The parent's view of a transfer running in the child: what engine and registry read."""

    def __init__(self, spec: BlobSpec, staging: Path, opts: TransferOptions, process: "TransferProcess"):
        super().__init__(spec, staging, opts)
        self.completed = 0
        self.connections_peak = 0
        self.location = SimpleNamespace(refreshes=0)
        self._aborting = False
        self._process = process
        self._tid = -1

    def start(self) -> None:
        self._tid = self._process.start(self)

    def abort(self) -> None:
        self._aborting = True
        self._process.abort(self._tid)

    @property
    def aborting(self) -> bool:
        return self._aborting

    def update(self, completed: int, retries: int, waiting, refreshes: int, peak: int, throttled: bool) -> None:
        delta = completed - self.completed
        self.completed, self.retries, self.waiting = completed, retries, waiting
        self.location.refreshes, self.connections_peak = refreshes, peak
        if throttled and self.opts.throttle is not None:
            self.opts.throttle.mark_held()
        if delta > 0 and self.opts.on_bytes:
            self.opts.on_bytes(delta)

    def finish(self, err: tuple | None) -> None:
        self.error = _error_in(err)
        self.waiting = None
        self.done.set()


class TransferProcess:
    """The child process and the socket to it; started on first use, again after a crash."""

    def __init__(self, staging: Path, max_connections: int, bandwidth: TokenBucket | None = None):
        self.staging = staging
        self.max_connections = max_connections
        self.bandwidth = bandwidth
        if bandwidth is not None:
            bandwidth.subscribe(self._rate_changed)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()     # also held while the child starts
        self._ids = itertools.count(1)
        self._transfers: dict[int, RemoteTransfer] = {}
        self._conn: Connection | None = None
        self._proc: subprocess.Popen | None = None

    def prestart(self) -> None:
        """Start the child in the background now, so the first download does not wait for it."""
        def run() -> None:
            with self._send_lock:
                self._ensure()
        threading.Thread(target=run, name="transfer-process-start", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _ensure(self) -> Connection:
        """Called with _send_lock held."""
        if self._conn is not None:
            return self._conn
        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from api.download.remote import main; main(sys.argv[1:])",
             str(theirs.fileno()), str(self.staging), str(self.max_connections)],
            pass_fds=[theirs.fileno()], cwd=Path(__file__).resolve().parents[2])
        theirs.close()
        conn = self._conn = Connection(ours.detach())
        threading.Thread(target=self._read, args=(conn,), name="transfer-process", daemon=True).start()
        if self.bandwidth is not None:
            conn.send(("rate", self.bandwidth.rate))   # later changes follow through _rate_changed
        return conn

    def _rate_changed(self, rate: int) -> None:
        with self._send_lock:
            if self._conn is None:
                return   # a child started later gets the rate in _ensure
            try:
                self._conn.send(("rate", rate))
            except OSError:
                pass

    def _send(self, msg: tuple) -> None:
        with self._send_lock:
            self._ensure().send(msg)

    def start(self, t: RemoteTransfer) -> int:
        # A job's own limit goes by the throttle's key: the child keeps one bucket per job, shared by
        # the job's transfers there, and the process-wide bucket is mirrored (_rate_changed).
        throttle = t.opts.throttle
        job_limit = (throttle.key, throttle.max_bps) if throttle is not None else None
        opts = dataclasses.replace(t.opts, on_bytes=None, slots=None, throttle=None)
        with self._lock:
            tid = next(self._ids)
            self._transfers[tid] = t
        try:
            self._send(("start", tid, t.spec, opts, job_limit))
        except OSError as e:
            self._lost(f"cannot reach the transfer process ({e})")
        return tid

    def abort(self, tid: int) -> None:
        try:
            self._send(("abort", tid))
        except OSError:
            pass

    def _read(self, conn: Connection) -> None:
        try:
            while True:
                msg = conn.recv()
                if msg[0] == "progress":
                    for tid, state in msg[1].items():
                        t = self._transfers.get(tid)
                        if t is not None:
                            t.update(*state)
                elif msg[0] == "done":
                    with self._lock:
                        t = self._transfers.pop(msg[1], None)
                    if t is not None:
                        t.update(*msg[3])
                        t.finish(msg[2])
        except (EOFError, OSError):
            pass
        if self._conn is conn:
            self._lost("the transfer process ended unexpectedly")

    def _lost(self, why: str) -> None:
        with self._lock:
            lost, self._transfers = list(self._transfers.values()), {}
            self._conn = None
        for t in lost:
            t.finish(("other", why))
        if lost:
            log.error("%s; %d transfers failed", why, len(lost))

    def close(self, timeout: float = 35.0) -> None:
        """Ask the child to stop (each transfer saves its offsets), then wait for it."""
        with self._send_lock:
            conn, proc = self._conn, self._proc
            self._conn = None
            if conn is not None:
                try:
                    conn.send(("stop",))
                except OSError:
                    pass
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if conn is not None:
            conn.close()


# -- the child ------------------------------------------------------------------------------------
def _state(t: BlobTransfer) -> tuple:
    """What the parent mirrors of a transfer (RemoteTransfer.update's arguments)."""
    throttled = t.opts.throttle is not None and t.opts.throttle.throttled
    return (t.completed, t.retries, t.waiting, t.location.refreshes, t.connections_peak, throttled)


class _JobLimits:
    """The child's buckets: the mirrored process-wide one and one per job, dropped with the job's
    last transfer."""

    def __init__(self):
        self.shared = TokenBucket(0)
        self._jobs: dict[int, list] = {}   # throttle key -> [JobThrottle, transfers using it]
        self._lock = threading.Lock()

    def acquire(self, job_limit: tuple[int, int] | None) -> JobThrottle:
        if job_limit is None:
            return JobThrottle(self.shared)
        key, max_bps = job_limit
        with self._lock:
            entry = self._jobs.setdefault(key, [JobThrottle(self.shared, max_bps), 0])
            entry[1] += 1
            return entry[0]

    def release(self, job_limit: tuple[int, int] | None) -> None:
        if job_limit is None:
            return
        with self._lock:
            entry = self._jobs.get(job_limit[0])
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._jobs[job_limit[0]]


def child(fd: int, staging: Path, max_connections: int) -> None:
    from .transfer import BlobTransfer   # noqa: PLC0415 - the child's own import

    conn = Connection(fd)
    slots = threading.BoundedSemaphore(max_connections)
    running: dict[int, BlobTransfer] = {}
    lock, send_lock = threading.Lock(), threading.Lock()
    stop = threading.Event()
    limits = _JobLimits()

    def send(msg: tuple) -> None:
        with send_lock:
            conn.send(msg)

    def watch(tid: int, t: BlobTransfer, job_limit: tuple[int, int] | None) -> None:
        t.done.wait()
        with lock:
            running.pop(tid, None)
        limits.release(job_limit)
        # The last counts go with the end: a transfer shorter than one report interval has no other.
        send(("done", tid, _error_out(t.error), _state(t)))

    def report() -> None:
        while not stop.wait(REPORT_EVERY):
            with lock:
                items = list(running.items())
            if items:
                send(("progress", {tid: _state(t) for tid, t in items}))

    threading.Thread(target=report, daemon=True).start()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            os._exit(0)   # the parent is gone: end like a process killed with it
        if msg[0] == "start":
            _, tid, spec, opts, job_limit = msg
            throttle = limits.acquire(job_limit)
            t = BlobTransfer(spec, staging, dataclasses.replace(opts, slots=slots, throttle=throttle))
            with lock:
                running[tid] = t
            t.start()
            threading.Thread(target=watch, args=(tid, t, job_limit), daemon=True).start()
        elif msg[0] == "rate":
            limits.shared.set_rate(msg[1])
        elif msg[0] == "abort":
            with lock:
                t = running.get(msg[1])
            if t is not None:
                t.abort()
        elif msg[0] == "stop":
            break
    with lock:
        left = list(running.values())
    for t in left:
        t.abort()
    deadline = time.monotonic() + 30
    for t in left:
        t.done.wait(max(0.0, deadline - time.monotonic()))   # offsets saved for the next start
    stop.set()


def main(argv: list[str]) -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "info").upper(),
                        format="%(asctime)s %(levelname)s %(name)s[transfers]: %(message)s")
    child(int(argv[0]), Path(argv[1]), int(argv[2]))
