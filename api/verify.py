"""Verify jobs: hash every file of a cached snapshot against the tree the Hub gave at download.

One verify per model at a time (a second request joins the running one), at most
MAX_CONCURRENT_VERIFIES running (the others wait, status `queued`), and the hashing of all of them
shares one pool of threads the size of the machine.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from huggingface_hub._tree_cache import read_tree_cache

from .download.engine import Progress
from .download.blob import BlobSpec
from .download.hashing import hash_file
from .errors import ApiError, NotFound
from .jobs.manager import JobManager, LiveJob
from .jobs.store import ACTIVE, now_iso
from .settings import Settings

if TYPE_CHECKING:
    from .models_cache import ModelCache


class Verifier:
    def __init__(self, settings: Settings, models: "ModelCache", jobs: JobManager):
        self.models = models
        self.jobs = jobs
        self._slots = threading.BoundedSemaphore(settings.max_concurrent_verifies)
        self._lock = threading.Lock()
        # hashlib drops the GIL, so files hash in parallel on every core; not more threads than that.
        self._hashers = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="verify-hash")
        jobs.runners["verify"] = self.run

    def start(self, repo_id: str, callback_url: str | None) -> tuple[dict, bool]:
        """(job, created): a verify of a model already being verified is that job."""
        if self.models.folder(repo_id) is None:
            raise NotFound(f"{repo_id} is not in the cache.", code="model_not_found")
        with self._lock:
            running = self.jobs.store.query(kind="verify", model_id=repo_id, statuses=ACTIVE, limit=1)
            if running:
                return self.jobs.get(running[0]["job_id"]), False
            return self.jobs.submit("verify", repo_id, {}, callback_url=callback_url), True

    def _wait_for_slot(self, live: LiveJob, job_id: str) -> None:
        if self._slots.acquire(blocking=False):
            return
        live.status = "queued"
        self.jobs.store.update(job_id, status="queued")
        while not self._slots.acquire(timeout=0.25):
            if live.abort.is_set():
                raise ApiError("The service stopped before this verify started.", code="interrupted", status=503)

    def run(self, live: LiveJob, rec: dict) -> dict:
        self._wait_for_slot(live, rec["job_id"])
        try:
            live.status = "verifying"
            # started_at is when hashing started, not when the job was queued.
            self.jobs.store.update(rec["job_id"], status="verifying", started_at=now_iso())
            return self._verify(live, rec["model_id"])
        finally:
            self._slots.release()

    def _verify(self, live: LiveJob, repo_id: str) -> dict:
        folder = self.models.folder(repo_id)
        if folder is None:
            raise ApiError(f"{repo_id} is no longer in the cache.", code="model_not_found", status=404)
        commit = self.models.describe(repo_id, folder, None)["commit"]
        snap = folder / "snapshots" / (commit or "")
        tree = read_tree_cache(str(folder), commit) if commit else None
        if not commit or not snap.is_dir() or tree is None:
            raise ApiError(f"{repo_id} has no snapshot with a stored tree to verify against.",
                           code="no_tree", status=409)
        links = sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_symlink() or p.is_file())
        checked = [p for p in links if p in tree]
        progress = Progress(bytes_total=sum(tree[p].size for p in checked), files_total=len(checked))
        live.progress = progress
        missing = [p for p in links if not (snap / p).exists()]
        unknown = [p for p in links if p not in tree]
        mismatched: list[str] = []

        def one(path: str) -> None:
            if live.abort.is_set() or path in missing:
                return
            e = tree[path]
            key = e.lfs_sha256 or e.blob_id
            spec = BlobSpec(key, e.size, "", e.lfs_sha256 is not None, f"{repo_id}:{path}")
            target = snap / path
            if target.stat().st_size != e.size or hash_file(target, spec) != key:
                mismatched.append(path)
            progress.file_done(path, e.size)

        list(self._hashers.map(one, sorted(checked, key=lambda p: -tree[p].size)))
        result = {"commit": commit, "files_checked": len(checked), "bytes_checked": progress.bytes_total,
                  "mismatched": sorted(mismatched), "missing": sorted(missing), "unknown": unknown,
                  "ok": not mismatched and not missing}
        if not result["ok"]:
            err = ApiError(f"{repo_id}: {len(mismatched)} file(s) differ from their checksum, {len(missing)} "
                           "missing.", code="integrity_error", status=409)
            err.result = result
            raise err
        return result

    def close(self) -> None:
        self._hashers.shutdown(wait=False, cancel_futures=True)
