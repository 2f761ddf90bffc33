"""A download job from plan to verified snapshot, run in a worker thread."""
from __future__ import annotations

import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from tenacity import Retrying, retry_if_exception_type

from ..errors import DownloadError
from ..settings import Settings
from .bandwidth import JobThrottle, TokenBucket
from .cache import HFCache
from .http import hub_origins
from .hub import FileEntry, Plan, make_plan
from .responses import TransientError
from .retry import Budget
from .blob import Part
from .hashing import hash_file
from .transfer import Aborted, BlobSpec, BlobTransfer, TransferOptions, TransferRegistry

log = logging.getLogger(__name__)
FILES_IN_PARALLEL = 2   # x DOWNLOAD_CONNECTIONS: enough to fill the disk, few enough threads for the GIL


@dataclass
class Progress:
    """What a running download has done; read by the job manager's ticker."""
    bytes_total: int = 0
    files_total: int = 0
    files_done: int = 0
    bytes_done_files: int = 0                     # bytes of finished files
    active: dict[str, BlobTransfer] = field(default_factory=dict)
    retries: int = 0
    connections: int = 0         # the most connections one file used (adaptive)
    url_refreshes: int = 0       # signed CDN URLs re-resolved before or after they expired
    planning_wait: tuple[float, str] | None = None   # a rate limit waited out while planning
    lock: threading.Lock = field(default_factory=threading.Lock)

    def waiting(self) -> tuple[float, str] | None:
        """(until, wall clock; why) of the longest rate-limit wait under way, if any."""
        with self.lock:
            waits = [t.waiting for t in self.active.values()] + [self.planning_wait]
        waits = [w for w in waits if w is not None]
        return max(waits) if waits else None

    @property
    def bytes_downloaded(self) -> int:
        with self.lock:
            return self.bytes_done_files + sum(t.completed for t in self.active.values())

    def file_done(self, path: str, size: int) -> None:
        with self.lock:
            self.active.pop(path, None)
            self.files_done += 1
            self.bytes_done_files += size


class DownloadEngine:
    def __init__(self, settings: Settings, cache: HFCache, registry: TransferRegistry,
                 on_bytes: Callable[[int], None] | None = None, bandwidth: TokenBucket | None = None):
        self.settings = settings
        self.bandwidth = bandwidth or TokenBucket(settings.bandwidth_limit_bps)  # shared by every job
        self.cache = cache
        self.registry = registry
        self.on_bytes = on_bytes

    def plan(self, repo_id: str, revision: str, include: list[str] | None, exclude: list[str] | None,
             abort: threading.Event | None = None, progress: Progress | None = None) -> Plan:
        """make_plan with retries on transient errors (the Hub down, 429, 5xx); a rate limit's reset
        time is waited out like huggingface_hub does, and shown on the job meanwhile."""
        stop = abort or threading.Event()
        budget = Budget(Part(0, 0), self.settings.max_retries, self.settings.retry_backoff_max)
        last: list[BaseException | None] = [None]

        def remember(state) -> None:
            last[0] = state.outcome.exception()

        def sleep(s: float) -> None:
            reason = getattr(last[0], "reason", None)
            if progress is not None and reason:
                progress.planning_wait = (time.time() + s, reason)
            try:
                if stop.wait(s):
                    raise Aborted(repo_id)
            finally:
                if progress is not None:
                    progress.planning_wait = None
        retrying = Retrying(retry=retry_if_exception_type(TransientError), stop=budget.stop, wait=budget.wait,
                            sleep=sleep, before_sleep=remember, reraise=True)
        try:
            return retrying(make_plan, self.settings.hf_endpoint, self.settings.token(), repo_id, revision,
                            include, exclude, self.settings.stall_timeout)
        except TransientError as e:
            raise DownloadError(f"{e}; gave up after {self.settings.max_retries} retries.", "hub_unreachable") from e

    def needed_bytes(self, plan: Plan) -> int:
        """Bytes this plan still has to write: not in the cache yet, less what is already staged."""
        need = 0
        for f in plan.files:
            if self.cache.has_blob(plan.repo_id, f):
                continue
            staged = self.cache.staged(f.key)
            need += f.size if not staged.exists() else max(0, f.size - _allocated(staged))
        return need

    def options(self, throttle: JobThrottle | None = None) -> TransferOptions:
        s = self.settings
        return TransferOptions(connections=s.download_connections, part_size=s.part_size_mb << 20,
                               stall_timeout=s.stall_timeout, connect_timeout=s.connect_timeout,
                               max_retries=s.max_retries, backoff_max=s.retry_backoff_max,
                               token=s.token(), on_bytes=self.on_bytes, slots=self.registry.slots,
                               throttle=throttle, max_connections=s.max_total_connections,
                               hubs=hub_origins(s.hf_endpoint))

    def spec(self, plan: Plan, f: FileEntry) -> BlobSpec:
        url = f"{self.settings.hf_endpoint}/{plan.repo_id}/resolve/{plan.commit}/{quote(f.path)}"
        return BlobSpec(f.key, f.size, url, f.lfs, f"{plan.repo_id}@{plan.commit[:8]}:{f.path}",
                        f"{self.settings.hf_endpoint}/{plan.repo_id}")

    def throttle(self, max_bps: int = 0) -> JobThrottle:
        return JobThrottle(self.bandwidth, max_bps)

    def run(self, plan: Plan, progress: Progress, abort: threading.Event,
            throttle: JobThrottle | None = None) -> dict:
        progress.bytes_total = plan.total_bytes
        progress.files_total = len(plan.files)
        self.cache.staging.mkdir(parents=True, exist_ok=True)
        opts = self.options(throttle or self.throttle())
        reused = 0

        def one(f: FileEntry) -> None:
            nonlocal reused
            if abort.is_set():
                raise Aborted(f.path)
            spec = self.spec(plan, f)
            if self.cache.has_blob(plan.repo_id, f):
                blob = self.cache.blob_path(plan.repo_id, f.key)
                if hash_file(blob, spec) == f.key:
                    reused += 1
                    progress.file_done(f.path, f.size)
                    return
                log.warning("blob %s of %s fails its checksum; fetching it again", f.key[:12], plan.repo_id)
                blob.unlink(missing_ok=True)
            self.cache.staged(f.key)  # the transfer names its files after the key: inside staging only
            t = self.registry.acquire(spec, opts)
            with progress.lock:
                progress.active[f.path] = t
            try:
                while not t.done.wait(0.2):
                    if abort.is_set():
                        raise Aborted(f.path)
                if t.error is not None:
                    raise t.error
                self.cache.link_blob(plan.repo_id, f.key, t.data_path)
                progress.retries += t.retries
                progress.connections = max(progress.connections, t.connections_peak)
                progress.url_refreshes += t.location.refreshes
            finally:
                with progress.lock:
                    if progress.active.get(f.path) is t:
                        progress.active.pop(f.path)
                self.registry.release(t)
            progress.file_done(f.path, f.size)

        # Largest first: the long transfers start at once and small files fill the gaps.
        files = sorted(plan.files, key=lambda f: -f.size)
        with ThreadPoolExecutor(FILES_IN_PARALLEL, thread_name_prefix="file") as pool:
            futures = [pool.submit(one, f) for f in files]
            errors = []
            for fut in futures:
                try:
                    fut.result()
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
                    abort.set()  # one failed file ends the job; the others keep their bytes
        if errors:
            real = [e for e in errors if not isinstance(e, Aborted)]
            raise real[0] if real else errors[0]
        snap = self.cache.place_snapshot(plan)
        return {"commit": plan.commit, "snapshot": str(snap), "files_reused": reused,
                "retries": progress.retries, "connections": progress.connections,
                "url_refreshes": progress.url_refreshes}

    def discard_partials(self, plan: Plan) -> int:
        """Remove staged bytes of this plan that no running transfer holds. Returns bytes freed."""
        busy = {t.spec.key for t in self.registry.running()}
        freed = 0
        for f in plan.files:
            if f.key in busy:
                continue
            for p in (self.cache.staged(f.key), self.cache.staged(f.key, ".json")):
                try:
                    freed += _allocated(p)
                    p.unlink()
                except FileNotFoundError:
                    pass
        return freed


def _allocated(p: Path) -> int:
    try:
        st = p.stat()
        return min(st.st_size, st.st_blocks * 512)
    except OSError:
        return 0


def disk_free(path: Path) -> tuple[int, int]:
    path.mkdir(parents=True, exist_ok=True)
    u = shutil.disk_usage(path)
    return u.free, u.total
