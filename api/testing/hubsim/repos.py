"""Repo storage for the simulator: content on disk, hashes, revisions.

Layout under root:  <org>/<name>/<commit>/<path...>      file content
                    <org>/<name>/<commit>.hubsim.json    spec + sizes/hashes, reused when the
                                                        same spec is added again
The commit is derived from the spec, so the same repo gets the same commit across runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

LFS_EXTENSIONS = (".safetensors", ".bin", ".gguf", ".pt", ".onnx", ".h5", ".msgpack")
LFS_MIN_SIZE = 10 * 1024 * 1024
_META_VERSION = 2
_BLOCK = 4 * 1024 * 1024
_HEADER = 32  # bytes of each generated block replaced by a per-block digest


def is_lfs(path: str, size: int) -> bool:
    return path.lower().endswith(LFS_EXTENSIONS) or size >= LFS_MIN_SIZE


def git_blob_header(size: int) -> bytes:
    return b"blob %d\0" % size


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(git_blob_header(len(data)) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    # git blob sha1 of what git stores for the path: the content, or for LFS files the pointer.
    # This is the tree `oid` and what `hf cache verify` checks non-LFS files against.
    git_sha1: str
    disk_path: Path

    @property
    def lfs(self) -> bool:
        return is_lfs(self.path, self.size)

    @property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, self.size)

    @property
    def xet_hash(self) -> str:
        """Stands in for the Xet content hash: 64 hex, derived from the content, never equal to
        the sha256 (a client that checks one against the other must notice)."""
        return hashlib.sha256(b"hubsim-xet:" + bytes.fromhex(self.sha256)).hexdigest()

    @property
    def etag(self) -> str:
        """The name the client stores the blob under."""
        return self.sha256 if self.lfs else self.git_sha1

    def info(self) -> dict:
        return {
            "size": self.size,
            "sha256": self.sha256,
            "git_sha1": self.git_sha1,
            "lfs": self.lfs,
            "etag": self.etag,
            "xet_hash": self.xet_hash,
        }


@dataclass
class Revision:
    commit: str
    files: dict[str, FileEntry]  # sorted by path
    dirs: list[str]  # every directory that holds a file, sorted


@dataclass
class Repo:
    repo_id: str
    gated: bool = False
    private: bool = False
    disabled: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag name -> commit
    commits: dict[str, Revision] = field(default_factory=dict)

    @property
    def object_id(self) -> str:
        """The opaque id the CDN knows the repo by (24 hex, like the Hub's object ids)."""
        return hashlib.sha1(b"hubsim-repo:" + self.repo_id.encode()).hexdigest()[:24]

    def by_xet_hash(self, xet_hash: str, filename: str | None = None) -> FileEntry | None:
        """A file of any commit with that content; the file name breaks ties between copies."""
        found = [e for rev in list(self.commits.values()) for e in rev.files.values() if e.xet_hash == xet_hash]
        named = [e for e in found if filename and posixpath.basename(e.path) == filename]
        return (named or found or [None])[0]

    def resolve(self, rev: str) -> Revision | None:
        commit = self.refs.get(rev, rev)
        return self.commits.get(commit)

    @property
    def default_ref(self) -> str:
        return "main" if "main" in self.refs else next(iter(self.refs))


def _check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if not 1 <= len(parts) <= 2 or any(not p or p in (".", "..") for p in parts):
        raise ValueError(f"invalid repo_id {repo_id!r}")


def _check_path(path: str) -> None:
    if not path or path.startswith("/") or "\\" in path or "\0" in path:
        raise ValueError(f"invalid file path {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"invalid file path {path!r}")


def _spec_of(repo_id: str, files: dict[str, bytes | int]) -> dict:
    spec = {}
    for path in sorted(files):
        content = files[path]
        _check_path(path)
        if isinstance(content, bool) or not isinstance(content, (int, bytes, bytearray, memoryview)):
            raise TypeError(f"{path}: content must be bytes or an int size, got {type(content).__name__}")
        if isinstance(content, int):
            if content < 0:
                raise ValueError(f"{path}: negative size")
            spec[path] = {"gen": content}
        else:
            spec[path] = {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    clash = set(spec) & {d for p in spec for d in _parents(p)}
    if clash:
        raise ValueError(f"paths used both as file and directory: {sorted(clash)}")
    return {"version": _META_VERSION, "repo_id": repo_id, "files": spec}


def _generate(dest: Path, size: int, seed: bytes, pool: ThreadPoolExecutor) -> str:
    """Write `size` deterministic pseudo-random bytes and return their sha256.

    One random block is repeated, with its head replaced by a per-block digest so that no two
    blocks are equal (dedup or caching in the path under test cannot fake a transfer). Hashing
    runs in a second thread beside the write; hashlib drops the GIL for large buffers."""
    sha256 = hashlib.sha256()
    block = bytearray(hashlib.shake_256(b"hubsim-block:" + seed).digest(_BLOCK))
    view = memoryview(block)
    with open(dest, "wb") as f:
        index = 0
        left = size
        while left > 0:
            n = min(_BLOCK, left)
            block[:_HEADER] = hashlib.blake2b(seed + index.to_bytes(8, "little"), digest_size=_HEADER).digest()
            chunk = view[:n]
            job = pool.submit(sha256.update, chunk)
            f.write(chunk)
            job.result()  # the next iteration rewrites the block
            left -= n
            index += 1
    return sha256.hexdigest()


class RepoStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._repos: dict[str, Repo] = {}
        self._by_sha256: dict[str, FileEntry] = {}

    def get(self, repo_id: str) -> Repo | None:
        return self._repos.get(repo_id)

    def repos(self) -> list[Repo]:
        return list(self._repos.values())

    def by_sha256(self, sha256: str) -> FileEntry | None:
        return self._by_sha256.get(sha256)

    def by_object_id(self, object_id: str) -> Repo | None:
        return next((r for r in list(self._repos.values()) if r.object_id == object_id), None)

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | int],
        *,
        gated: bool = False,
        revision: str = "main",
        private: bool = False,
        disabled: bool = False,
    ) -> str:
        _check_repo_id(repo_id)
        if not revision:
            raise ValueError("revision must not be empty")
        spec = _spec_of(repo_id, files)
        canonical = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
        commit = hashlib.sha1(b"hubsim-commit:" + canonical).hexdigest()
        repo_dir = self.root / repo_id
        content_dir = repo_dir / commit
        meta_path = repo_dir / f"{commit}.hubsim.json"
        with self._lock:
            meta = self._load_meta(meta_path, spec, content_dir)
            if meta is None:
                meta = self._build(repo_id, files, spec, content_dir)
                tmp = meta_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
                os.replace(tmp, meta_path)
            entries = {
                path: FileEntry(path, m["size"], m["sha256"], m["git_sha1"], content_dir / path)
                for path, m in sorted(meta["entries"].items())
            }
            dirs = sorted({d for p in entries for d in _parents(p)})
            repo = self._repos.get(repo_id) or Repo(repo_id)
            repo.gated, repo.private, repo.disabled = gated, private, disabled
            repo.commits[commit] = Revision(commit, entries, dirs)
            repo.refs[revision] = commit
            self._repos[repo_id] = repo
            for entry in entries.values():
                self._by_sha256.setdefault(entry.sha256, entry)
        return commit

    @staticmethod
    def _load_meta(meta_path: Path, spec: dict, content_dir: Path) -> dict | None:
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("spec") != spec:
            return None
        for path, m in meta["entries"].items():
            try:
                if (content_dir / path).stat().st_size != m["size"]:
                    return None
            except OSError:
                return None
        return meta

    @staticmethod
    def _build(repo_id: str, files: dict[str, bytes | int], spec: dict, content_dir: Path) -> dict:
        entries = {}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hubsim-hash") as pool:
            for path in spec["files"]:
                dest = content_dir / path
                dest.parent.mkdir(parents=True, exist_ok=True)
                content = files[path]
                if isinstance(content, int):
                    seed = hashlib.sha256(f"{repo_id}\0{path}".encode()).digest()
                    size = content
                    sha256 = _generate(dest, size, seed, pool)
                    # Non-LFS files are small (< 10 MiB), so reading one back is cheap; for LFS
                    # files git only ever hashes the pointer.
                    data = None if is_lfs(path, size) else dest.read_bytes()
                else:
                    data = bytes(content)
                    dest.write_bytes(data)
                    size, sha256 = len(data), hashlib.sha256(data).hexdigest()
                sha1 = git_blob_sha1(lfs_pointer(sha256, size) if data is None else data)
                entries[path] = {"size": size, "sha256": sha256, "git_sha1": sha1}
        return {"spec": spec, "entries": entries}


def _parents(path: str) -> list[str]:
    out = []
    d = posixpath.dirname(path)
    while d:
        out.append(d)
        d = posixpath.dirname(d)
    return out
