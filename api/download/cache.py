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

from ..errors import DownloadError
from ..validation import repo_folder_name
from .hub import FileEntry, Plan

STAGING = ".llmbox-partial"


def inside(path: Path, base: Path) -> Path:
    """`path` if it lands strictly inside `base` once every existing symlink on the way is followed
    (the last component is not followed: it is the entry about to be written). A second line
    behind the Hub metadata checks: no name from the Hub writes outside the cache."""
    real_base = os.path.realpath(base)
    real = os.path.join(os.path.realpath(path.parent), path.name)
    if path.name in ("", ".", "..") or real == real_base or os.path.commonpath([real_base, real]) != real_base:
        raise DownloadError(f"Refused to write {path}: it lands outside {base}.", "hub_error", permanent=True)
    return path


def _name(key: str) -> str:
    """A blob key names one entry of a folder: with no separator, NUL, or dot-only name it cannot
    leave that folder (a cheap check for the hot paths; the Hub's keys are hex anyway)."""
    if not key or "/" in key or "\\" in key or "\0" in key or key in (".", ".."):
        raise DownloadError(f"Refused the blob name {key!r}: not a plain file name.", "hub_error", permanent=True)
    return key


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
        return self.repo_dir(repo_id) / "blobs" / _name(key)

    def staged(self, key: str, suffix: str = ".part") -> Path:
        return self.staging / (_name(key) + suffix)

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
        snap = inside(repo / "snapshots" / plan.commit, repo / "snapshots")
        inside(repo / "trees" / f"{plan.commit}.json", repo / "trees")
        for f in plan.files:
            link = inside(snap / f.path, snap)
            link.parent.mkdir(parents=True, exist_ok=True)
            rel = os.path.relpath(self.blob_path(plan.repo_id, f.key), link.parent)
            tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.tmp")
            os.symlink(rel, tmp)
            os.replace(tmp, link)
        write_tree_cache(str(repo), plan.commit, {
            f.path: TreeCacheEntry(size=f.size, blob_id=f.blob_id, lfs_sha256=f.lfs_sha256,
                                   lfs_size=f.size if f.lfs_sha256 else None)
            for f in plan.tree or plan.files})
        if plan.revision != plan.commit:
            ref = inside(repo / "refs" / plan.revision, repo / "refs")
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(f".{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text(plan.commit)
            os.replace(tmp, ref)
        return snap
