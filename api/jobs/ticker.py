"""The job ticker: samples live jobs' progress four times a second, smooths their speed and writes
progress to the table about once a second; prunes finished jobs past retention every hour."""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Callable

from .store import JobStore

if TYPE_CHECKING:
    from .manager import LiveJob

log = logging.getLogger(__name__)
PRUNE_EVERY = 3600.0   # seconds between prunes of finished jobs past JOB_RETENTION_DAYS


def tick_loop(store: JobStore, live_jobs: Callable[[], list["LiveJob"]], prune: Callable[[], int],
              stop: threading.Event) -> None:
    last_write = last_prune = time.monotonic()
    while not stop.wait(0.25):
        now = time.monotonic()
        if now - last_prune >= PRUNE_EVERY:
            last_prune = now
            try:
                prune()
            except sqlite3.Error as e:   # a busy table: next round
                log.warning("job prune failed: %s", e)
        write = now - last_write >= 1.0
        for j in live_jobs():
            p = j.progress
            b = p.bytes_downloaded
            j.max_bytes = max(j.max_bytes, b)
            j.speed.sample(j.max_bytes, now)
            if p.bytes_total and j.max_bytes >= p.bytes_total and j.status == "downloading":
                j.status = "verifying"
            if write and not j.abort.is_set():
                # A job that finished meanwhile keeps its final row: the store refuses a status
                # write on a final job (see JobStore.update).
                store.update(j.job_id, bytes_downloaded=j.max_bytes, bytes_total=p.bytes_total,
                             files_done=p.files_done, files_total=p.files_total, status=j.status,
                             attempts=j.attempts_base + 1 + p.retries + sum(
                                 t.retries for t in list(p.active.values())))
        if write:
            last_write = now
