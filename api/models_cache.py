"""The model cache as the API sees it: list, status, verify, delete. Folders are found through the
cache's own listing, never by joining user text into a path."""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from huggingface_hub._tree_cache import read_tree_cache

from . import envfile
from .download.cache import HFCache
from .download.engine import disk_free
from .download.transfer import BlobSpec, hash_file
from .errors import Conflict, NotFound
from .jobs.manager import JobManager, LiveJob
from .jobs.store import now_iso
from .settings import Settings
from .validation import repo_folder_name, validate_repo_id

log = logging.getLogger(__name__)
DOWNLOADING = ("queued", "downloading", "verifying")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _disk_bytes(folder: Path) -> int:
    total, seen = 0, set()
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


class _Hashing:
    """Quacks like a transfer for the job's progress: bytes hashed so far of one file."""
    completed = 0


class ModelCache:
    def __init__(self, settings: Settings, cache: HFCache, jobs: JobManager):
        self.settings = settings
        self.cache = cache
        self.jobs = jobs

    # -- lookup -----------------------------------------------------------------------------------
    def _folder(self, repo_id: str) -> Path | None:
        """The repo's folder if the cache lists it: a scan of the cache root, compared by name."""
        wanted = repo_folder_name(validate_repo_id(repo_id))
        root = self.cache.root
        try:
            with os.scandir(root) as it:
                for entry in it:
                    if entry.name == wanted and entry.is_dir(follow_symlinks=False):
                        return root / entry.name
        except FileNotFoundError:
            return None
        return None

    def active_model(self) -> str | None:
        try:
            return envfile.read_value(self.settings.env_file)
        except OSError:
            return None

    def _describe(self, repo_id: str, folder: Path | None, active: str | None) -> dict:
        commit, files, complete, mtime = None, 0, False, 0.0
        revision = "main"
        if folder is not None:
            refs = folder / "refs"
            ref = refs / "main"
            if not ref.is_file() and refs.is_dir():
                found = [p for p in refs.rglob("*") if p.is_file()]
                ref = found[0] if found else ref
                revision = str(ref.relative_to(refs)) if found else revision
            snaps = folder / "snapshots"
            if ref.is_file():
                commit = ref.read_text().strip()
            elif snaps.is_dir():
                candidates = sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
                commit = candidates[0].name if candidates else None
            snap = snaps / commit if commit else None
            if snap is not None and snap.is_dir():
                links = [p for p in snap.rglob("*") if p.is_symlink() or p.is_file()]
                files = len(links)
                complete = files > 0 and all(p.exists() for p in links)
            for p in folder.rglob("*"):
                try:
                    mtime = max(mtime, p.lstat().st_mtime)
                except OSError:
                    pass
        jobs = self.jobs.store.query(kind="download", model_id=repo_id, limit=1)
        last = jobs[0] if jobs else None
        if last and last["status"] in DOWNLOADING:
            status = "downloading"
        elif complete:
            # Every file of the ref's snapshot is on disk. A later download request that failed or
            # was cancelled (Hub down, token revoked) leaves this snapshot intact: still complete.
            status = "complete"
        else:
            status = "partial"
        return {"model_id": repo_id, "revision": revision, "commit": commit, "status": status,
                "size_bytes": _disk_bytes(folder) if folder else 0, "files": files,
                "active": repo_id == active, "last_modified": _iso(mtime) if mtime else None}

    def list(self) -> list[dict]:
        active = self.active_model()
        seen: dict[str, Path | None] = {}
        try:
            entries = list(os.scandir(self.cache.root))
        except FileNotFoundError:
            entries = []
        for e in entries:
            if e.name.startswith("models--") and e.is_dir(follow_symlinks=False):
                parts = e.name[len("models--"):].split("--", 1)
                if len(parts) == 2:
                    try:
                        seen[validate_repo_id("/".join(parts))] = Path(e.path)
                    except Exception:  # noqa: BLE001 - a folder no valid id maps to is not ours to list
                        continue
        for rec in self.jobs.store.query(kind="download", statuses=DOWNLOADING + ("paused",), limit=1000):
            seen.setdefault(rec["model_id"], None)
        return [self._describe(rid, folder, active) for rid, folder in sorted(seen.items())]

    def status(self, repo_id: str) -> dict:
        folder = self._folder(repo_id)
        if folder is None and not self.jobs.active_download(repo_id):
            return {"model_id": repo_id, "status": "not_found"}
        return self._describe(repo_id, folder, self.active_model())

    def is_complete(self, repo_id: str) -> bool:
        return self.status(repo_id).get("status") == "complete"

    def disk(self) -> dict:
        free, total = disk_free(self.cache.root)
        return {"cache_dir": str(self.cache.root), "cache_bytes": _disk_bytes(self.cache.root),
                "free_bytes": free, "total_bytes": total,
                "reserve_bytes": self.settings.disk_reserve_mb << 20}

    # -- delete -----------------------------------------------------------------------------------
    def delete(self, repo_id: str, force: bool) -> dict:
        validate_repo_id(repo_id)
        folder = self._folder(repo_id)
        running = self.jobs.active_download(repo_id)
        if folder is None and running is None:
            raise NotFound(f"{repo_id} is not in the cache.", code="model_not_found")
        if repo_id == self.active_model() and not force:
            raise Conflict(f"{repo_id} is the active model; switch first or pass force=true.", code="model_active")
        freed = 0
        if running is not None:
            if not force:
                raise Conflict(f"{repo_id} is being downloaded (job {running['job_id']}); cancel it or pass "
                               "force=true.", code="download_in_progress")
            cancelled = self.jobs.cancel(running["job_id"], discard=True)
            # The partial bytes the cancel discarded were freed by this delete too.
            freed += int(((cancelled.get("result") or {}).get("freed_bytes")) or 0)
            # The job may have placed blobs (or the whole snapshot) before it stopped: look again.
            folder = self._folder(repo_id)
        if folder is not None:
            freed += _disk_bytes(folder)
            # Rename first: the repo disappears for readers at once, and a crash leaves only trash.
            trash = self.cache.root / f".llmbox-trash-{uuid.uuid4().hex[:12]}"
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        rec = {"job_id": uuid.uuid4().hex[:16], "kind": "delete", "model_id": repo_id, "revision": None,
               "status": "complete", "created_at": now_iso(), "started_at": now_iso(), "completed_at": now_iso(),
               "attempts": 1, "result": {"freed_bytes": freed, "forced": force}}
        self.jobs.store.insert(rec)
        log.info("job %s: deleted %s, freed %d bytes", rec["job_id"], repo_id, freed)
        return {"status": "deleted", "model_id": repo_id, "size_mb": round(freed / 2**20, 2),
                "freed_bytes": freed, "message": f"Deleted {repo_id} ({freed} bytes freed).", "job_id": rec["job_id"]}

    def purge_trash(self) -> None:
        for p in self.cache.root.glob(".llmbox-trash-*"):
            shutil.rmtree(p, ignore_errors=True)

    # -- verify -----------------------------------------------------------------------------------
    def start_verify(self, repo_id: str, callback_url: str | None) -> dict:
        folder = self._folder(repo_id)
        if folder is None:
            raise NotFound(f"{repo_id} is not in the cache.", code="model_not_found")
        return self.jobs.submit("verify", repo_id, {}, callback_url=callback_url)

    def run_verify(self, live: LiveJob, rec: dict) -> dict:
        from .download.engine import Progress
        from .errors import ApiError
        repo_id = rec["model_id"]
        folder = self._folder(repo_id)
        if folder is None:
            raise ApiError(f"{repo_id} is no longer in the cache.", code="model_not_found", status=404)
        info = self._describe(repo_id, folder, None)
        commit = info["commit"]
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

        # hashlib drops the GIL, so files hash in parallel on every core.
        with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
            list(pool.map(one, sorted(checked, key=lambda p: -tree[p].size)))
        result = {"commit": commit, "files_checked": len(checked), "bytes_checked": progress.bytes_total,
                  "mismatched": sorted(mismatched), "missing": sorted(missing), "unknown": unknown,
                  "ok": not mismatched and not missing}
        if not result["ok"]:
            err = ApiError(f"{repo_id}: {len(mismatched)} file(s) differ from their checksum, {len(missing)} "
                           "missing.", code="integrity_error", status=409)
            err.result = result
            raise err
        return result
