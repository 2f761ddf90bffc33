"""What the disk says about one cached repo (ref, commit, file count, completeness, size, newest
mtime), computed once per change of the repo's folders.

Walking every file of every repo on each `GET /api/models` made the list cost grow with the cache
(about a second at 300 repos). The facts of a repo are kept under a signature: the inode and mtime
of the repo folder, `blobs/`, `refs/` and every folder below `refs/` and `snapshots/`. Every way
this service, huggingface_hub or a user changes a repo's contents (a file or link added, removed
or renamed) changes one of those; only then is the repo walked again. An edit in place of a blob's
bytes is not one of them: that is what `POST /api/models/verify` is for.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Facts:
    revision: str
    commit: str | None
    files: int
    complete: bool
    size_bytes: int
    mtime: float


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


def _dir_marks(path: str, out: list) -> None:
    """(path, inode, mtime) of path and of every folder below it; symlinks are not followed."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        out.append((path, None))
        return
    out.append((path, st.st_ino, st.st_mtime_ns))
    try:
        with os.scandir(path) as it:
            subdirs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for sub in subdirs:
        _dir_marks(sub, out)


def signature(folder: Path) -> tuple:
    marks: list = []
    base = str(folder)
    for path in (base, os.path.join(base, "blobs")):
        try:
            st = os.stat(path, follow_symlinks=False)
            marks.append((path, st.st_ino, st.st_mtime_ns))
        except OSError:
            marks.append((path, None))
    _dir_marks(os.path.join(base, "refs"), marks)
    _dir_marks(os.path.join(base, "snapshots"), marks)
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
    return Facts(revision, commit, files, complete, disk_bytes(folder), mtime)


class RepoFacts:
    """Facts by repo folder, recomputed only when the folder's signature changed."""

    def __init__(self):
        self._known: dict[str, tuple[tuple, Facts]] = {}
        self._lock = threading.Lock()

    def get(self, folder: Path) -> Facts:
        key = str(folder)
        sig = signature(folder)
        with self._lock:
            hit = self._known.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        facts = compute(folder)
        # The signature taken before the walk: a change during the walk makes the next call walk again.
        with self._lock:
            self._known[key] = (sig, facts)
        return facts

    def forget_except(self, folders: set[str]) -> None:
        """Drop the facts of folders that are gone (deleted repos), so memory follows the cache."""
        with self._lock:
            for key in [k for k in self._known if k not in folders]:
                del self._known[key]
