"""The job queue: download jobs under a concurrency limit, other kinds at once; all in SQLite.

Work runs in threads so the event loop only ever reads snapshots. A ticker (ticker.py) samples
progress, smooths speed and writes it to the table about once a second.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from ..download.bandwidth import JobThrottle
from ..download.engine import DownloadEngine, Progress, disk_free
from ..download.hub import Plan
from ..download.transfer import Aborted
from ..errors import ApiError, Conflict, DownloadError, InsufficientStorage, NotFound, QueueFull
from ..settings import Settings
from .hubgate import HubGate
from .store import ACTIVE, FINAL, JobStore, now_iso
from .ticker import tick_loop
from .views import RUNNING, job_view

log = logging.getLogger(__name__)
HTTP_FOR_CODE = {"repo_not_found": 404, "revision_not_found": 404, "file_not_found": 404, "gated_repo": 403,
                 "repo_disabled": 403, "unauthorized": 403, "no_matching_files": 404, "insufficient_storage": 507}


class SpeedMeter:
    """Bytes per second, exponentially smoothed over a few seconds."""

    def __init__(self, half_life: float = 3.0):
        self.half_life = half_life
        self.rate = 0.0
        self._last: tuple[float, int] | None = None

    def sample(self, total: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if self._last is None:
            self._last = (now, total)
            return self.rate
        t0, b0 = self._last
        dt = now - t0
        if dt < 0.2:
            return self.rate
        inst = max(0, total - b0) / dt
        alpha = 1 - 0.5 ** (dt / self.half_life)
        self.rate = inst if self.rate == 0 else self.rate + alpha * (inst - self.rate)
        self._last = (now, total)
        return self.rate


@dataclass
class LiveJob:
    job_id: str
    kind: str
    abort: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None
    progress: Progress | None = None
    speed: SpeedMeter = field(default_factory=SpeedMeter)
    max_bytes: int = 0
    status: str = "running"
    thread: threading.Thread | None = None
    discard: bool = False
    attempts_base: int = 0
    result: dict | None = None   # partial result of a non-download job (switch steps)
    finalizing: bool = False     # final row written, hooks still running: readers see it as running
    throttle: JobThrottle | None = None   # a download's bandwidth limits (and whether they hold it back)


Runner = Callable[[LiveJob, dict], dict | None]


class JobManager:
    def __init__(self, settings: Settings, store: JobStore, engine: DownloadEngine):
        self.settings = settings
        self.store = store
        self.engine = engine
        self.hub = HubGate(settings.hub_submit_workers, settings.hub_submit_timeout)
        self.runners: dict[str, Runner] = {"download": self._run_download}
        self.final_hooks: list[Callable[[dict], None]] = []
        self._live: dict[str, LiveJob] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._started = False
        self.max_concurrent = settings.max_concurrent_downloads   # PUT /api/limits changes it

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        for rec in self.store.query(statuses=RUNNING + ("queued",), limit=10_000, oldest_first=True):
            if rec["kind"] == "download":
                # Interrupted by a crash or restart: back in the queue, its parts resume from disk.
                self.store.update(rec["job_id"], status="queued")
            else:   # other kinds start at once when submitted: a queued one was waiting for a slot
                self.store.update(rec["job_id"], status="failed", error_code="interrupted",
                                  error="The service stopped while this job ran.", completed_at=now_iso())
        self.prune()
        self._started = True
        self._ticker = threading.Thread(target=tick_loop, args=(self.store, self._progressing, self.prune, self._stop),
                                        name="job-ticker", daemon=True)
        self._ticker.start()
        self.schedule()

    def prune(self) -> int:
        """Finished jobs older than JOB_RETENTION_DAYS leave the table (0 keeps them all): what the
        scheduler, submit and the lists read stays the size of what is going on, not of history."""
        days = self.settings.job_retention_days
        if not days:
            return 0
        before = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="milliseconds")
        n = self.store.prune(before.replace("+00:00", "Z"))
        if n:
            log.info("pruned %d jobs finished before %s", n, before)
        return n

    def shutdown(self, timeout: float = 15.0) -> None:
        self._stop.set()
        with self._lock:
            live = list(self._live.values())
            for j in live:
                j.stop_reason = "queued" if j.kind == "download" else None
                j.abort.set()
        self.hub.close()
        deadline = time.monotonic() + timeout
        for j in live:
            if j.thread:
                j.thread.join(max(0.0, deadline - time.monotonic()))

    # -- views ------------------------------------------------------------------------------------
    def view(self, rec: dict, final: bool = False) -> dict:
        return job_view(rec, None if final else self._live.get(rec["job_id"]))

    def get(self, job_id: str) -> dict:
        rec = self.store.get(job_id)
        if rec is None:
            raise NotFound(f"No job with id {job_id!r}.", code="job_not_found")
        return self.view(rec)

    def list(self, **filters) -> list[dict]:
        return [self.view(r) for r in self.store.query(**filters)]

    def newest(self, kind: str, model_id: str | None = None) -> dict | None:
        """The most recent job of a kind (for one model), answered from memory (JobStore.newest)."""
        rec = self.store.newest(kind, model_id)
        return self.view(rec) if rec is not None else None

    # -- submission -------------------------------------------------------------------------------
    def _new_record(self, kind: str, model_id: str | None, revision: str | None, status: str, **extra) -> dict:
        rec = {"job_id": uuid.uuid4().hex[:16], "kind": kind, "model_id": model_id, "revision": revision,
               "status": status, "created_at": now_iso(), "attempts": 0, **extra}
        self.store.insert(rec)
        return rec

    def active_download(self, model_id: str, revision: str | None = None) -> dict | None:
        rows = self.active_downloads(model_id, revision, limit=1)
        return rows[0] if rows else None

    def active_downloads(self, model_id: str, revision: str | None = None, limit: int = 100) -> list[dict]:
        return self.store.query(kind="download", model_id=model_id, revision=revision, statuses=ACTIVE, limit=limit)

    def joinable(self, model_id: str, revision: str, include: list[str] | None,
                 exclude: list[str] | None) -> dict | None:
        """The active download this request may join: same model, revision and file selection. A
        request for other files is a job of its own, never a join that would drop its files."""
        want = _selection(include, exclude)
        for rec in self.active_downloads(model_id, revision):
            params = rec["params"] or {}
            if _selection(params.get("include"), params.get("exclude")) == want:
                return rec
        return None

    def submit_download(self, model_id: str, revision: str, include: list[str] | None,
                        exclude: list[str] | None, callback_url: str | None = None,
                        activate: bool = False, max_bps: int | None = None,
                        deadline: float | None = None) -> tuple[dict, bool]:
        """Returns (job, created). Permanent Hub errors answer at once; a Hub outage, or a Hub
        slower than the deadline, queues the job (its worker plans with retries)."""
        params = {"include": include, "exclude": exclude, "activate": activate,
                  **({"max_bps": max_bps} if max_bps else {})}
        existing = self.joinable(model_id, revision, include, exclude)
        if existing:
            return self._join(existing, activate), False
        self._check_queue()
        plan = None
        try:
            plan = self.hub.call(self.engine.plan, model_id, revision, include, exclude, abort=_NO_RETRY,
                                 deadline=deadline)
        except DownloadError as e:
            if e.permanent:
                rec = self._new_record("download", model_id, revision, "failed", params=params,
                                       error=e.detail, error_code=e.code, completed_at=now_iso(),
                                       callback_url=callback_url)
                raise ApiError(e.detail, code=e.code, status=HTTP_FOR_CODE.get(e.code, 502),
                               extra={"job_id": rec["job_id"]}) from e
        except Aborted:
            pass  # transient: the worker plans again with its retry budget
        if plan is not None:
            self.check_disk(plan)
        with self._lock:
            existing = self.joinable(model_id, revision, include, exclude)
            if existing:
                return self._join(existing, activate), False
            self._check_queue()
            rec = self._new_record(
                "download", model_id, revision, "queued", params=params, callback_url=callback_url,
                plan=plan.to_json() if plan else None, bytes_total=plan.total_bytes if plan else 0,
                files_total=len(plan.files) if plan else 0)
        log.info("job %s: download %s@%s queued", rec["job_id"], model_id, revision)
        self.schedule()
        return self.get(rec["job_id"]), True

    def _check_queue(self) -> None:
        if self.store.count(("queued",), "download") >= self.settings.max_queue_length:
            raise QueueFull("The download queue is full; try again later.", headers={"Retry-After": "30"})

    def _join(self, existing: dict, activate: bool) -> dict:
        """A second request for a running download joins it; its activate=true is not dropped."""
        params = existing["params"] or {}
        if activate and not params.get("activate"):
            self.store.update(existing["job_id"], params={**params, "activate": True})
        return self.get(existing["job_id"])

    def check_disk(self, plan: Plan, exclude_job: str | None = None) -> None:
        need = self.engine.needed_bytes(plan)
        free, _ = disk_free(self.settings.hf_cache)
        reserve = self.settings.disk_reserve_mb << 20
        promised = 0
        for rec in self.store.query(kind="download", statuses=ACTIVE, limit=1000):
            if rec["job_id"] != exclude_job and rec["plan"]:
                try:
                    promised += self.engine.needed_bytes(Plan.from_json(rec["plan"]))
                except DownloadError:   # a plan stored before its names were checked: it fails when it runs
                    continue
        if need > free - reserve - promised:
            raise InsufficientStorage(
                f"{plan.repo_id} needs {need} more bytes; {free} are free, less a reserve of {reserve} and "
                f"{promised} promised to other downloads.")

    def submit(self, kind: str, model_id: str | None, runner_params: dict, callback_url: str | None = None,
               revision: str | None = None) -> dict:
        """A job of another kind (verify, switch): starts at once in its own thread."""
        rec = self._new_record(kind, model_id, revision, "queued", params=runner_params, callback_url=callback_url)
        self._start(rec)
        return self.get(rec["job_id"])

    # -- control ----------------------------------------------------------------------------------
    def _stop_live(self, job_id: str, reason: str, discard: bool = False) -> bool:
        with self._lock:
            live = self._live.get(job_id)
            if live is None:
                return False
            live.stop_reason, live.discard = reason, discard
            live.abort.set()
        if live.thread:
            live.thread.join(30)
        return True

    def pause(self, job_id: str) -> dict:
        rec = self._require(job_id)
        if rec["kind"] != "download" or rec["status"] not in ("queued",) + RUNNING:
            raise Conflict(f"A {rec['status']} {rec['kind']} job cannot be paused.", code="invalid_state")
        if not self._stop_live(job_id, "paused"):
            self.store.update(job_id, status="paused")
        return self.get(job_id)

    def resume(self, job_id: str) -> dict:
        rec = self._require(job_id)
        if rec["kind"] != "download" or rec["status"] not in ("paused", "cancelled", "failed"):
            raise Conflict(f"A {rec['status']} {rec['kind']} job cannot be resumed.", code="invalid_state")
        with self._lock:
            params = rec["params"] or {}
            other = self.joinable(rec["model_id"], rec["revision"], params.get("include"), params.get("exclude"))
            if other and other["job_id"] != job_id:
                raise Conflict(f"Job {other['job_id']} already downloads these files.", code="download_in_progress")
            self._check_queue()  # a resumed job goes back in the queue: the same limit as a new one
            self.store.update(job_id, status="queued", error=None, error_code=None, completed_at=None,
                              reopen=True)
        self.schedule()
        return self.get(job_id)

    def cancel(self, job_id: str, discard: bool = False) -> dict:
        rec = self._require(job_id)
        if rec["status"] in FINAL or rec["kind"] != "download":
            raise Conflict(f"A {rec['status']} {rec['kind']} job cannot be cancelled.", code="invalid_state")
        if not self._stop_live(job_id, "cancelled", discard):
            self._finish(rec, "cancelled", None, discard=discard)
        return self.get(job_id)

    def _require(self, job_id: str) -> dict:
        rec = self.store.get(job_id)
        if rec is None:
            raise NotFound(f"No job with id {job_id!r}.", code="job_not_found")
        return rec

    # -- scheduling -------------------------------------------------------------------------------
    def schedule(self) -> None:
        if not self._started or self._stop.is_set():
            return
        with self._lock:
            running = sum(1 for j in self._live.values() if j.kind == "download")
            free = self.max_concurrent - running
            if free <= 0:
                return
            for rec in self.store.query(kind="download", status="queued", limit=free, oldest_first=True):
                if rec["job_id"] not in self._live:
                    self._start(rec)

    def _start(self, rec: dict) -> None:
        with self._lock:
            live = LiveJob(rec["job_id"], rec["kind"], attempts_base=rec.get("attempts") or 0)
            live.status = {"download": "downloading", "verify": "verifying"}.get(rec["kind"], "running")
            if not self.store.update(rec["job_id"], status=live.status,
                                     started_at=rec.get("started_at") or now_iso(), attempts=live.attempts_base + 1):
                return  # cancelled (final) between the query that picked it and now: nothing to run
            self._live[rec["job_id"]] = live
            live.thread = threading.Thread(target=self._run, args=(live, rec), daemon=True,
                                           name=f"job-{rec['job_id']}")
            live.thread.start()

    def _run(self, live: LiveJob, rec: dict) -> None:
        runner = self.runners[rec["kind"]]
        try:
            result = runner(live, rec)
            if live.abort.is_set() and live.stop_reason:
                raise Aborted(rec["job_id"])
            self._finish(rec, "complete", result, live=live)
        except BaseException as e:  # noqa: BLE001 - every outcome lands in the job row
            if live.abort.is_set() and live.stop_reason is not None:
                self._finish(rec, live.stop_reason, None, live=live, discard=live.discard)
            elif isinstance(e, DownloadError):
                self._finish(rec, "failed", None, live=live, error=e.detail, code=e.code)
            elif isinstance(e, ApiError):
                self._finish(rec, "failed", getattr(e, "result", None) or live.result, live=live,
                             error=e.detail, code=e.code)
            elif isinstance(e, Aborted):
                self._finish(rec, "queued", None, live=live)
            else:
                log.exception("job %s: unexpected error", rec["job_id"])
                self._finish(rec, "failed", None, live=live, error=f"Internal error: {type(e).__name__}.",
                             code="internal_error")
        finally:
            with self._lock:
                self._live.pop(rec["job_id"], None)
            self.schedule()

    def _finish(self, rec: dict, status: str, result: dict | None, *, live: LiveJob | None = None,
                error: str | None = None, code: str | None = None, discard: bool = False) -> None:
        fields = {"status": status, "error": error, "error_code": code}
        if live is not None and live.progress is not None:
            p = live.progress
            fields.update(bytes_downloaded=max(live.max_bytes, p.bytes_downloaded), bytes_total=p.bytes_total,
                          files_done=p.files_done, files_total=p.files_total,
                          attempts=live.attempts_base + 1 + p.retries)
        if result is not None:
            fields["result"] = result
        if status in FINAL:
            fields["completed_at"] = now_iso()
            if live is not None:
                live.finalizing = True
        if discard and rec.get("plan"):
            freed = self.engine.discard_partials(Plan.from_json(rec["plan"]))
            fields["result"] = {"discarded": True, "freed_bytes": freed}
            fields["bytes_downloaded"] = 0
        if not self.store.update(rec["job_id"], **fields):
            # Already final (cancelled while it ran its last step): that outcome stands, and its
            # hooks have run.
            log.info("job %s: already final, %s not recorded", rec["job_id"], status)
            return
        log.info("job %s: %s %s -> %s%s", rec["job_id"], rec["kind"], rec["model_id"], status,
                 f" ({code})" if code else "")
        if status in FINAL:
            job = self.view(self.store.get(rec["job_id"]), final=True)
            for hook in self.final_hooks:
                try:
                    hook(job)
                except Exception:  # noqa: BLE001 - a hook never breaks the job
                    log.exception("job %s: final hook failed", rec["job_id"])

    # -- download runner --------------------------------------------------------------------------
    def _run_download(self, live: LiveJob, rec: dict) -> dict:
        params = rec["params"] or {}
        live.max_bytes = rec["bytes_downloaded"] or 0
        # Before planning, so a rate-limit wait there shows on the job; the ticker writes these totals.
        live.progress = Progress(bytes_total=rec["bytes_total"] or 0, files_total=rec["files_total"] or 0)
        if rec["plan"]:
            plan = Plan.from_json(rec["plan"])
        else:
            plan = self.engine.plan(rec["model_id"], rec["revision"], params.get("include"),
                                    params.get("exclude"), abort=live.abort, progress=live.progress)
            rec["plan"] = plan.to_json()
            self.store.update(rec["job_id"], plan=rec["plan"], bytes_total=plan.total_bytes,
                              files_total=len(plan.files))
        try:
            self.check_disk(plan, exclude_job=rec["job_id"])
        except InsufficientStorage as e:
            raise DownloadError(e.detail, "insufficient_storage", permanent=True) from e
        live.throttle = self.engine.throttle(params.get("max_bps") or 0)
        return self.engine.run(plan, live.progress, live.abort, live.throttle)

    def _progressing(self) -> list[LiveJob]:
        with self._lock:
            return [j for j in self._live.values() if j.progress is not None]


def _selection(include: list[str] | None, exclude: list[str] | None) -> tuple:
    """A file selection, compared regardless of pattern order or repetition."""
    return (tuple(sorted(set(include))) if include else None, tuple(sorted(set(exclude))) if exclude else None)


class _NoRetry(threading.Event):
    """Passed as the abort event of a plan made inside a request: a transient error aborts at once."""

    def wait(self, timeout=None) -> bool:  # noqa: D401
        return True


_NO_RETRY = _NoRetry()
