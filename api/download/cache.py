"""The Hugging Face cache layout, written exactly as huggingface_hub writes it.

`<cache>/models--org--name/{blobs/<key>, snapshots/<commit>/<path> -> ../../blobs/<key>,
refs/<revision>, trees/<commit>.json}`. Every entry is moved in with `os.replace`, so a reader
(vLLM, `hf cache verify`) sees either the old state or the new one, never half a file.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

from ..validation import repo_folder_name
from .hub import FileEntry, Plan

STAGING = ".llmbox-partial"


class HFCache:
    def __init__(self, root: Path):
        self.root = root

    @property
    def staging(self) -> Path:
        # Inside the cache so a verified blob can be hard-linked/renamed in, same filesystem.
        return self.root / STAGING

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / repo_folder_name(repo_id)

    def blob_path(self, repo_id: str, key: str) -> Path:
        return self.repo_dir(repo_id) / "blobs" / key

    def has_blob(self, repo_id: str, f: FileEntry) -> bool:
        try:
            return self.blob_path(repo_id, f.key).stat().st_size == f.size
        except OSError:
            return False

    def link_blob(self, repo_id: str, key: str, src: Path) -> Path:
        dest = self.blob_path(repo_id, key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{key}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return dest

    def place_snapshot(self, plan: Plan) -> Path:
        repo = self.repo_dir(plan.repo_id)
        snap = repo / "snapshots" / plan.commit
        for f in plan.files:
            link = snap / f.path
            link.parent.mkdir(parents=True, exist_ok=True)
            rel = os.path.relpath(repo / "blobs" / f.key, link.parent)
            tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.tmp")
            os.symlink(rel, tmp)
            os.replace(tmp, link)
        write_tree_cache(str(repo), plan.commit, {
            f.path: TreeCacheEntry(size=f.size, blob_id=f.blob_id, lfs_sha256=f.lfs_sha256,
                                   lfs_size=f.size if f.lfs_sha256 else None)
            for f in plan.tree or plan.files})
        if plan.revision != plan.commit:
            ref = repo / "refs" / plan.revision
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(f".{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text(plan.commit)
            os.replace(tmp, ref)
        return snap
