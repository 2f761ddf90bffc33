"""Hashing blobs the way the Hub names them (sha256 for LFS files, the git blob sha1 otherwise),
straight from the page cache.

A transfer maps its staging file rather than reading it: `h.update` on a window of the mapping
hashes the cached pages in place, which saves the copy into a buffer that `read` makes. Each
window is unmapped again (MADV_DONTNEED drops our page-table entries, not the page cache), so a
40 GB file never shows up as 40 GB of resident memory.
"""
from __future__ import annotations

import hashlib
import mmap
from pathlib import Path

from .blob import BlobSpec

WINDOW = 8 << 20   # a multiple of the page size


def new_hasher(spec: BlobSpec):
    if spec.lfs:
        return hashlib.sha256()
    h = hashlib.sha1()
    h.update(b"blob %d\0" % spec.size)
    return h


class MappedFile:
    """A read-only view of an open file for hashing ranges of it; `update` is thread-safe as long
    as the range is no longer written."""

    def __init__(self, fd: int, size: int):
        self.size = size
        self._map = mmap.mmap(fd, size, prot=mmap.PROT_READ) if size else None
        if self._map is not None:
            self._map.madvise(mmap.MADV_SEQUENTIAL)
            self._view = memoryview(self._map)

    def update(self, h, pos: int, end: int) -> None:
        """Feed bytes [pos, end) to the hasher."""
        while pos < end:
            n = min(WINDOW - pos % WINDOW, end - pos)
            h.update(self._view[pos:pos + n])
            pos += n
            if pos % WINDOW == 0 or pos == self.size:
                start = (pos - 1) // WINDOW * WINDOW
                self._map.madvise(mmap.MADV_DONTNEED, start, pos - start)

    def close(self) -> None:
        if self._map is not None:
            self._view.release()
            self._map.close()
            self._map = None

    def __enter__(self) -> "MappedFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def hash_file(path: Path, spec: BlobSpec) -> str:
    """Files in the cache are read, not mapped: someone may truncate a blob while it is checked,
    and a mapped page past the new end kills the process (SIGBUS) where a read just comes up
    short. A transfer maps its own staging file only (`MappedFile`)."""
    h = new_hasher(spec)
    buf = bytearray(WINDOW)
    mv = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(mv[:n])
    return h.hexdigest()
