"""Run-time limits (bandwidth, concurrent downloads): changed by PUT /api/limits, applied at once to
the running downloads, written to the job table as a `limits` job (the audit trail) and kept in
the state database, where they win over BANDWIDTH_LIMIT / MAX_CONCURRENT_DOWNLOADS until changed
again."""
from __future__ import annotations

import logging
import sqlite3
import uuid
from contextlib import closing
from dataclasses import asdict, dataclass

from .download.bandwidth import TokenBucket, format_rate
from .errors import InvalidInput
from .jobs.manager import JobManager
from .jobs.store import now_iso
from .settings import Settings

log = logging.getLogger(__name__)
MAX_CONCURRENT = 16           # the same bound as MAX_CONCURRENT_DOWNLOADS


@dataclass(frozen=True)
class Limits:
    bandwidth_bps: int
    max_concurrent_downloads: int
    source: str = "settings"      # "settings": from the environment; "api": set by PUT /api/limits
    updated_at: str | None = None

    def view(self) -> dict:
        return {**asdict(self), "bandwidth": format_rate(self.bandwidth_bps)}


class LimitsService:
    def __init__(self, settings: Settings, jobs: JobManager, bandwidth: TokenBucket):
        self.settings = settings
        self.jobs = jobs
        self.bandwidth = bandwidth
        self._path = str(settings.state_db)
        with closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS limits (id INTEGER PRIMARY KEY CHECK (id = 1), "
                       "bandwidth_bps INTEGER NOT NULL, max_concurrent_downloads INTEGER NOT NULL, "
                       "updated_at TEXT NOT NULL)")
            row = db.execute("SELECT bandwidth_bps, max_concurrent_downloads, updated_at FROM limits").fetchone()
        if row:
            self.current = Limits(row[0], row[1], "api", row[2])
        else:
            self.current = Limits(settings.bandwidth_limit_bps, settings.max_concurrent_downloads)
        self._apply(self.current)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=30)

    def _apply(self, limits: Limits) -> None:
        self.bandwidth.set_rate(limits.bandwidth_bps)
        self.jobs.max_concurrent = limits.max_concurrent_downloads

    def get(self) -> dict:
        return self.current.view()

    def put(self, bandwidth_bps: int | None, max_concurrent: int | None) -> dict:
        if bandwidth_bps is None and max_concurrent is None:
            return self.get()   # nothing to change: not an error, and nothing to record
        if max_concurrent is not None and not 1 <= max_concurrent <= MAX_CONCURRENT:
            raise InvalidInput(f"max_concurrent_downloads must be between 1 and {MAX_CONCURRENT}.",
                               code="invalid_limits")
        before = self.current
        new = Limits(before.bandwidth_bps if bandwidth_bps is None else bandwidth_bps,
                     before.max_concurrent_downloads if max_concurrent is None else max_concurrent,
                     "api", now_iso())
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO limits VALUES (1, ?, ?, ?)",
                       (new.bandwidth_bps, new.max_concurrent_downloads, new.updated_at))
        self.current = new
        self._apply(new)
        self._audit(before, new)
        log.info("limits: bandwidth %s, %d concurrent downloads", format_rate(new.bandwidth_bps),
                 new.max_concurrent_downloads)
        self.jobs.schedule()   # a higher concurrency starts queued downloads now
        return new.view()

    def _audit(self, before: Limits, new: Limits) -> None:
        keys = ("bandwidth_bps", "max_concurrent_downloads")
        self.jobs.store.insert({
            "job_id": uuid.uuid4().hex[:16], "kind": "limits", "model_id": None, "revision": None,
            "status": "complete", "created_at": new.updated_at, "started_at": new.updated_at,
            "completed_at": new.updated_at, "attempts": 1,
            "params": {k: getattr(new, k) for k in keys},
            "result": {"previous": {k: getattr(before, k) for k in keys}, "current": {k: getattr(new, k) for k in keys}}})
