"""Repository metadata through huggingface_hub: revision -> commit, the tree, pattern selection."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import (DisabledRepoError, EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                    HFValidationError, RepositoryNotFoundError, RevisionNotFoundError)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import filter_repo_objects

from ..errors import DownloadError
from .responses import GATED_HELP, RATE_LIMIT_STATUSES, TransientError, rate_limit_wait

log = logging.getLogger(__name__)


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
    return e


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
              include: list[str] | None = None, exclude: list[str] | None = None) -> Plan:
    """Resolve the revision and list the tree. Raises DownloadError (permanent) or TransientError."""
    what = f"{repo_id}@{revision}"
    api = HfApi(endpoint=endpoint, token=token or False)
    try:
        info = api.repo_info(repo_id, revision=revision)
        _auth_check(api, repo_id)
        commit = info.sha
        tree = [FileEntry(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs else None)
                for f in api.list_repo_tree(repo_id, revision=commit, recursive=True, expand=False)
                if isinstance(f, RepoFile)]
    except Exception as e:  # noqa: BLE001 - mapped to the job's error codes
        raise _map_error(e, what, f"{endpoint}/{repo_id}", token) from e
    if not commit or len(commit) != 40:
        raise DownloadError(f"The Hub gave no commit for {what}.", "hub_error", permanent=True)
    names = set(filter_repo_objects([f.path for f in tree], allow_patterns=include, ignore_patterns=exclude))
    files = [f for f in tree if f.path in names]
    if not files:
        raise DownloadError(f"No file of {what} matches the include/exclude patterns.", "no_matching_files",
                            permanent=True)
    return Plan(repo_id, revision, commit, files, tree)
