"""Repository metadata through huggingface_hub: revision -> commit, the tree, pattern selection."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

import httpx2
from huggingface_hub import HfApi, get_session
from huggingface_hub.errors import (DisabledRepoError, EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                    HFValidationError, RepositoryNotFoundError, RevisionNotFoundError)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import filter_repo_objects

from ..errors import DownloadError
from .responses import GATED_HELP, RATE_LIMIT_STATUSES, TransientError, rate_limit_wait

log = logging.getLogger(__name__)
COMMIT = re.compile(r"[0-9a-f]{40}")    # huggingface_hub's REGEX_COMMIT_HASH; also a git blob sha1
SHA256 = re.compile(r"[0-9a-f]{64}")    # huggingface_hub's REGEX_SHA256
MAX_PATH = 4096


class HubMetadataError(DownloadError):
    """The Hub (or a mirror) answered metadata that cannot be trusted to name files: refused whole."""

    def __init__(self, what: str, problem: str):
        super().__init__(f"The Hub sent unusable metadata for {what}: {problem}.", "hub_error", permanent=True)


def _bad_path(p: object) -> bool:
    """What huggingface_hub refuses to place in a snapshot, and then some: only a relative,
    normalised POSIX path of printable parts may name a file."""
    if not isinstance(p, str) or not p or len(p) > MAX_PATH or "\\" in p or p.startswith("/"):
        return True
    if any(ord(c) < 0x20 or c == "\x7f" for c in p):
        return True
    return any(part in ("", ".", "..") for part in p.split("/"))


def _bad_size(n: object) -> bool:
    return type(n) is not int or n < 0


def check_entry(what: str, f: "FileEntry") -> None:
    if _bad_path(f.path):
        raise HubMetadataError(what, f"file path {f.path!r} is not a relative path inside the repository")
    if _bad_size(f.size):
        raise HubMetadataError(what, f"size {f.size!r} of {f.path!r} is not a non-negative integer")
    if not isinstance(f.blob_id, str) or not COMMIT.fullmatch(f.blob_id):
        raise HubMetadataError(what, f"oid {f.blob_id!r} of {f.path!r} is not a 40-hex git blob id")
    if f.lfs_sha256 is not None and (not isinstance(f.lfs_sha256, str) or not SHA256.fullmatch(f.lfs_sha256)):
        raise HubMetadataError(what, f"LFS oid {f.lfs_sha256!r} of {f.path!r} is not a 64-hex sha256")


def check_commit(what: str, commit: object) -> str:
    if not isinstance(commit, str) or not COMMIT.fullmatch(commit):
        raise HubMetadataError(what, f"commit {commit!r} is not 40 hex characters")
    return commit


def check_tree(what: str, tree: list["FileEntry"]) -> None:
    """Every value that becomes a path, a blob name or a byte count, checked before any is used."""
    seen: set[str] = set()
    for f in tree:
        check_entry(what, f)
        if f.path in seen:
            raise HubMetadataError(what, f"{f.path!r} is listed twice")
        seen.add(f.path)
    dirs = {"/".join(p.split("/")[:i]) for p in seen for i in range(1, p.count("/") + 1)}
    clash = seen & dirs
    if clash:
        raise HubMetadataError(what, f"{sorted(clash)[0]!r} is both a file and a folder")


def _entry(what: str, f: RepoFile) -> "FileEntry":
    lfs = f.lfs
    if lfs is not None and lfs.size != f.size:
        raise HubMetadataError(what, f"LFS size {lfs.size!r} of {f.path!r} differs from its size {f.size!r}")
    return FileEntry(f.path, f.size, f.blob_id, lfs.sha256 if lfs else None)


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None = None

    @property
    def key(self) -> str:
        return self.lfs_sha256 or self.blob_id

    @property
    def lfs(self) -> bool:
        return self.lfs_sha256 is not None

    def to_json(self) -> dict:
        return {"path": self.path, "size": self.size, "blob_id": self.blob_id, "lfs_sha256": self.lfs_sha256}


@dataclass
class Plan:
    repo_id: str
    revision: str
    commit: str
    files: list[FileEntry]                       # the selected files
    tree: list[FileEntry] = field(default_factory=list)  # every file at the commit (for trees/<commit>.json)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict:
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
                "files": [f.to_json() for f in self.files], "tree": [f.to_json() for f in self.tree]}

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        return cls(d["repo_id"], d["revision"], d["commit"], [FileEntry(**f) for f in d["files"]],
                   [FileEntry(**f) for f in d["tree"]])


def _map_error(e: Exception, what: str, page: str, token: str | None) -> Exception:
    # GatedRepoError subclasses RepositoryNotFoundError: test it first.
    if isinstance(e, GatedRepoError):
        whose = ("the account of HF_TOKEN has not been granted access: " if token
                 else "no HF_TOKEN is set: ")
        return DownloadError(f"{what} is gated and {whose}" + GATED_HELP.format(page=page) + ".", "gated_repo",
                             permanent=True)
    if isinstance(e, DisabledRepoError):
        return DownloadError(f"{what} has been disabled on the Hub (by its author or the Hub's staff); it cannot be "
                             "downloaded.", "repo_disabled", permanent=True)
    if isinstance(e, RevisionNotFoundError):
        return DownloadError(f"The revision of {what} does not exist on the Hub.", "revision_not_found",
                             permanent=True)
    if isinstance(e, RepositoryNotFoundError):
        hint = "" if token else "; if it is private, set HF_TOKEN to a token that can read it"
        return DownloadError(f"{what} does not exist on the Hub (or the token cannot see it){hint}.",
                             "repo_not_found", permanent=True)
    if isinstance(e, HFValidationError):
        # Our validator is looser than the Hub's (e.g. its 96-character parts): no such repo exists.
        return DownloadError(f"{what} cannot exist on the Hub ({e}).", "repo_not_found", permanent=True)
    if isinstance(e, EntryNotFoundError):
        return DownloadError(f"A file of {what} is missing on the Hub.", "file_not_found", permanent=True)
    if isinstance(e, HfHubHTTPError) and e.response is not None:
        status = e.response.status_code
        wait = rate_limit_wait(status, e.response.headers) if status in RATE_LIMIT_STATUSES else None
        if wait is not None:
            return TransientError(f"HTTP {status} from the Hub for {what}", *wait)
        if status in (408, 429) or status >= 500:
            return TransientError(f"HTTP {status} from the Hub for {what}")
        if status == 401 and not token:
            # The real Hub's answer to an anonymous request for a missing (or private) repo.
            return DownloadError(f"{what} does not exist on the Hub; if it is private, set HF_TOKEN to a token "
                                 "that can read it.", "repo_not_found", permanent=True)
        if status in (401, 403):
            return DownloadError(f"The Hub refused the token for {what} (HTTP {status}).", "unauthorized",
                                 permanent=True)
        return DownloadError(f"The Hub answered HTTP {status} for {what}.", "hub_error", permanent=True)
    if isinstance(e, (httpx2.TransportError, OSError)):
        return TransientError(f"The Hub is unreachable ({type(e).__name__}) for {what}")
    if isinstance(e, (json.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError)):
        # Not JSON, or JSON of another shape: huggingface_hub fails while parsing it.
        return DownloadError(f"The Hub answered malformed metadata for {what} ({type(e).__name__}).",
                             "hub_error", permanent=True)
    return e


def bound_hub_calls(connect_timeout: float, stall_timeout: float) -> None:
    """huggingface_hub's shared client waits forever by default: a Hub that accepts and never
    answers would hold a planning thread for good. Its calls get the engine's own timeouts."""
    get_session().timeout = httpx2.Timeout(stall_timeout, connect=connect_timeout)


def _auth_check(api: HfApi, repo_id: str) -> None:
    """The real Hub lists a gated repo's metadata and tree to everyone; only its files (and this
    check) refuse. A Hub mirror without the route (404/405) is not an error."""
    try:
        api.auth_check(repo_id)
    except (GatedRepoError, DisabledRepoError, RepositoryNotFoundError):
        raise
    except HfHubHTTPError as e:
        if e.response is None or e.response.status_code not in (404, 405):
            raise


def make_plan(endpoint: str, token: str | None, repo_id: str, revision: str,
              include: list[str] | None = None, exclude: list[str] | None = None,
              timeout: float | None = None) -> Plan:
    """Resolve the revision and list the tree. Raises DownloadError (permanent) or TransientError."""
    what = f"{repo_id}@{revision}"
    api = HfApi(endpoint=endpoint, token=token or False)
    try:
        info = api.repo_info(repo_id, revision=revision, timeout=timeout)  # the tree: the session's timeout
        _auth_check(api, repo_id)
        commit = check_commit(what, info.sha)  # before it goes into the tree URL and snapshots/<commit>
        tree = [_entry(what, f) for f in api.list_repo_tree(repo_id, revision=commit, recursive=True, expand=False)
                if isinstance(f, RepoFile)]
    except HubMetadataError:
        raise
    except Exception as e:  # noqa: BLE001 - mapped to the job's error codes
        raise _map_error(e, what, f"{endpoint}/{repo_id}", token) from e
    check_tree(what, tree)
    names = set(filter_repo_objects([f.path for f in tree], allow_patterns=include, ignore_patterns=exclude))
    files = [f for f in tree if f.path in names]
    if not files:
        raise DownloadError(f"No file of {what} matches the include/exclude patterns.", "no_matching_files",
                            permanent=True)
    return Plan(repo_id, revision, commit, files, tree)
