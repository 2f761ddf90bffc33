"""The model cache as the API sees it: list, status, verify, delete. Folders are found through the
cache's own listing, never by joining user text into a path."""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from . import envfile
from .download.cache import HFCache
from .download.engine import disk_free
from .errors import Conflict, NotFound
from .jobs.manager import JobManager
from .jobs.store import now_iso
from .repo_facts import RepoFacts, disk_bytes
from .settings import Settings
from .validation import repo_folder_name, validate_repo_id
from .verify import Verifier

log = logging.getLogger(__name__)
DOWNLOADING = ("queued", "downloading", "verifying")


class ModelCache:
    def __init__(self, settings: Settings, cache: HFCache, jobs: JobManager):
        self.settings = settings
        self.cache = cache
        self.jobs = jobs
        self.facts = RepoFacts()
        self._folders: tuple[tuple, dict[str, Path]] | None = None
        self.verifier = Verifier(settings, self, jobs)

    # -- lookup -----------------------------------------------------------------------------------
    def folder(self, repo_id: str) -> Path | None:
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

    def describe(self, repo_id: str, folder: Path | None, active: str | None,
                 downloading: bool | None = None) -> dict:
        facts = self.facts.get(folder) if folder is not None else None
        if downloading is None:
            downloading = any(r["status"] in DOWNLOADING for r in self.jobs.active_downloads(repo_id))
        if downloading:
            status = "downloading"
        elif facts is not None and facts.complete:
            # Every file of the ref's snapshot is on disk. A later download request that failed or
            # was cancelled (Hub down, token revoked) leaves this snapshot intact: still complete.
            status = "complete"
        else:
            status = "partial"
        return {"model_id": repo_id, "revision": facts.revision if facts else "main",
                "commit": facts.commit if facts else None, "status": status,
                "size_bytes": facts.size_bytes if facts else 0, "files": facts.files if facts else 0,
                "active": repo_id == active,
                "last_modified": facts.last_modified if facts else None}

    def _repo_folders(self) -> dict[str, Path]:
        """Repo id -> folder for every repo folder of the cache; listed again only when the cache
        root's entries changed (its mtime), and the facts of folders gone are dropped then."""
        try:
            st = os.stat(self.cache.root)
        except FileNotFoundError:
            return {}
        mark = (st.st_ino, st.st_mtime_ns)
        if self._folders is not None and self._folders[0] == mark:
            return self._folders[1]
        found: dict[str, Path] = {}
        for e in os.scandir(self.cache.root):
            if e.name.startswith("models--") and e.is_dir(follow_symlinks=False):
                parts = e.name[len("models--"):].split("--", 1)
                if len(parts) == 2:
                    try:
                        found[validate_repo_id("/".join(parts))] = Path(e.path)
                    except Exception:  # noqa: BLE001 - a folder no valid id maps to is not ours to list
                        continue
        self.facts.forget_except({str(p) for p in found.values()})
        self._folders = (mark, found)
        return found

    def list(self) -> list[dict]:
        active = self.active_model()
        seen: dict[str, Path | None] = dict(self._repo_folders())
        # One indexed query for every model's jobs, not one per model.
        downloading: set[str] = set()
        for rec in self.jobs.store.query(kind="download", statuses=DOWNLOADING + ("paused",), limit=1000):
            seen.setdefault(rec["model_id"], None)
            if rec["status"] in DOWNLOADING:
                downloading.add(rec["model_id"])
        return [self.describe(rid, folder, active, rid in downloading) for rid, folder in sorted(seen.items())]

    def status(self, repo_id: str) -> dict:
        folder = self.folder(repo_id)
        if folder is None and not self.jobs.active_download(repo_id):
            return {"model_id": repo_id, "status": "not_found"}
        return self.describe(repo_id, folder, self.active_model())

    def is_complete(self, repo_id: str) -> bool:
        return self.status(repo_id).get("status") == "complete"

    def disk(self) -> dict:
        free, total = disk_free(self.cache.root)
        repos = self._repo_folders()
        used = sum(self.facts.get(folder).size_bytes for folder in repos.values())
        known = {p.name for p in repos.values()}
        for e in os.scandir(self.cache.root):   # staging, trash, locks: small, walked each time
            if e.name not in known:
                used += disk_bytes(Path(e.path)) if e.is_dir(follow_symlinks=False) else e.stat(
                    follow_symlinks=False).st_size
        return {"cache_dir": str(self.cache.root), "cache_bytes": used, "free_bytes": free, "total_bytes": total,
                "reserve_bytes": self.settings.disk_reserve_mb << 20}

    # -- delete -----------------------------------------------------------------------------------
    def delete(self, repo_id: str, force: bool) -> dict:
        validate_repo_id(repo_id)
        folder = self.folder(repo_id)
        downloads = self.jobs.active_downloads(repo_id)
        running = downloads[0] if downloads else None
        if folder is None and running is None:
            raise NotFound(f"{repo_id} is not in the cache.", code="model_not_found")
        if repo_id == self.active_model() and not force:
            raise Conflict(f"{repo_id} is the active model; switch first or pass force=true.", code="model_active")
        freed = 0
        if running is not None:
            if not force:
                raise Conflict(f"{repo_id} is being downloaded (job {running['job_id']}); cancel it or pass "
                               "force=true.", code="download_in_progress")
            for rec in downloads:   # one per file selection (see docs/downloads.md)
                cancelled = self.jobs.cancel(rec["job_id"], discard=True)
                # The partial bytes the cancel discarded were freed by this delete too.
                freed += int(((cancelled.get("result") or {}).get("freed_bytes")) or 0)
            # The job may have placed blobs (or the whole snapshot) before it stopped: look again.
            folder = self.folder(repo_id)
        if folder is not None:
            freed += disk_bytes(folder)
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
    def start_verify(self, repo_id: str, callback_url: str | None) -> tuple[dict, bool]:
        return self.verifier.start(repo_id, callback_url)
