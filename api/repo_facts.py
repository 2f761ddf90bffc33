"""What the disk says about one cached repo (ref, commit, file count, completeness, size, newest
mtime), computed once per change of the repo's folders.

Walking every file of every repo on each `GET /api/models` made the list cost grow with the cache
(about a second at 300 repos). The facts of a repo are kept under a signature: the inode and mtime
of `blobs/` and of every folder of `refs/` and `snapshots/` (a stat each, no listing). Every way
this service, huggingface_hub or a user changes a repo's contents (a file or link added, removed
or renamed) changes one of those; only then is the repo walked again. An edit in place of a blob's
bytes is not one of them: that is what `POST /api/models/verify` is for.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class Facts:
    revision: str
    commit: str | None
    files: int
    complete: bool
    size_bytes: int
    last_modified: str | None   # ISO 8601 of the newest mtime in the folder


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def disk_bytes(folder: Path) -> int:
    """Bytes of the files under folder, a hard-linked file counted once."""
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


def watched_dirs(folder: Path) -> tuple[str, ...]:
    """The folders whose mtimes tell that the repo changed: blobs/ and every folder of refs/ and
    snapshots/ (found by a walk, done only when the repo is walked anyway)."""
    dirs = [os.path.join(folder, "blobs")]
    for sub in ("refs", "snapshots"):
        dirs.extend(dirpath for dirpath, _, _ in os.walk(os.path.join(folder, sub)))
    return tuple(dirs)


def signature(dirs: tuple[str, ...]) -> tuple:
    """(inode, mtime) of each folder: a stat each, no listing. A new folder changes its parent's
    mtime, a removed one fails its stat: either way the signature differs."""
    marks = []
    for path in dirs:
        try:
            st = os.stat(path, follow_symlinks=False)
            marks.append((st.st_ino, st.st_mtime_ns))
        except OSError:
            marks.append(None)
    return tuple(marks)


def compute(folder: Path) -> Facts:
    revision, commit, files, complete, mtime = "main", None, 0, False, 0.0
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
    return Facts(revision, commit, files, complete, disk_bytes(folder), _iso(mtime) if mtime else None)


class RepoFacts:
    """Facts by repo folder, recomputed only when the folder's signature changed."""

    def __init__(self):
        self._known: dict[str, tuple[tuple[str, ...], tuple, Facts]] = {}
        self._lock = threading.Lock()

    def get(self, folder: Path) -> Facts:
        key = str(folder)
        with self._lock:
            hit = self._known.get(key)
        if hit is not None and signature(hit[0]) == hit[1]:
            return hit[2]
        dirs = watched_dirs(folder)
        sig = signature(dirs)   # before the walk: a change during it makes the next call walk again
        facts = compute(folder)
        with self._lock:
            self._known[key] = (dirs, sig, facts)
        return facts

    def forget_except(self, folders: set[str]) -> None:
        """Drop the facts of folders that are gone (deleted repos), so memory follows the cache."""
        with self._lock:
            for key in [k for k in self._known if k not in folders]:
                del self._known[key]
