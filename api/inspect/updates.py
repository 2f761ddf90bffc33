"""Has the branch a cached model follows moved on the Hub? One Hub call per model, a short deadline,
and `unknown` (not an error) when the Hub cannot be asked."""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.utils import filter_repo_objects

from ..download.cache import HFCache
from ..download.hub import FileEntry
from ..jobs.store import JobStore
from ..settings import Settings
from .service import hub_error

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class UpdateChecker:
    def __init__(self, settings: Settings, cache: HFCache, store: JobStore):
        self.settings = settings
        self.cache = cache
        self.store = store

    def check_all(self, models: list[dict]) -> list[dict]:
        with ThreadPoolExecutor(4, thread_name_prefix="updates") as pool:
            return list(pool.map(self.check, [m for m in models if m.get("commit")]))

    def _selection(self, model_id: str) -> dict | None:
        """The include/exclude of the last complete download (an update fetches the same selection);
        None when the model came from elsewhere (hf download, a copy)."""
        rows = self.store.query(kind="download", model_id=model_id, status="complete", limit=1)
        return (rows[0]["params"] or {}) if rows else None

    def check(self, model: dict) -> dict:
        model_id, commit, revision = model["model_id"], model["commit"], model.get("revision") or "main"
        out = {"model_id": model_id, "revision": revision, "commit": commit, "hub_commit": None,
               "status": "unknown", "changed": [], "added": [], "removed": [], "bytes_to_fetch": 0}
        folder = self.cache.repo_dir(model_id)
        if _COMMIT.match(revision) or not (folder / "refs" / revision).is_file():
            return {**out, "status": "pinned"}
        try:
            info = HfApi(endpoint=self.settings.hf_endpoint, token=self.settings.token() or False).model_info(
                model_id, revision=revision, files_metadata=True, timeout=self.settings.hub_timeout)
        except Exception as e:  # noqa: BLE001 - by contract a per-model answer, never an error
            err = hub_error(e, f"{model_id}@{revision}", self.settings)
            return {**out, "error": err.code, "detail": err.detail}
        out["hub_commit"] = info.sha
        if info.sha == commit:
            return {**out, "status": "up_to_date"}
        have = _snapshot_keys(folder / "snapshots" / commit)
        remote = {s.rfilename: FileEntry(s.rfilename, s.size or 0, s.blob_id, s.lfs.sha256 if s.lfs else None)
                  for s in info.siblings or []}
        selection = self._selection(model_id)
        new = set()
        if selection is not None:
            new = set(filter_repo_objects(sorted(set(remote) - set(have)), allow_patterns=selection.get("include"),
                                          ignore_patterns=selection.get("exclude")))
        changed = sorted(p for p, key in have.items() if p in remote and key != remote[p].key)
        fetch = [remote[p] for p in [*changed, *sorted(new)] if not self.cache.has_blob(model_id, remote[p])]
        return {**out, "status": "update_available", "changed": changed, "added": sorted(new),
                "removed": sorted(p for p in have if p not in remote),
                "bytes_to_fetch": sum(f.size for f in fetch)}


def _snapshot_keys(snap: Path) -> dict[str, str]:
    """path -> blob key of a snapshot: each entry is a link to blobs/<sha256 or git sha1>, as
    huggingface_hub lays it out (so models fetched with `hf download` are compared too)."""
    out = {}
    if not snap.is_dir():
        return out
    for p in snap.rglob("*"):
        if p.is_symlink():
            out[str(p.relative_to(snap))] = os.path.basename(os.readlink(p))
    return out
