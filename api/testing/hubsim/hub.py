"""The Hub's side: the JSON API, the resolve endpoint and its redirects, access rules."""

from __future__ import annotations

import hashlib
import posixpath
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from .faults import Fault
from .http_base import BaseHandler, HttpError
from .repos import FileEntry, Repo, Revision

_DATE = "2024-01-01T00:00:00.000Z"
_XET_CAS = "/v1/reconstructions/"  # where the Link header sends a Xet client (not served)


def _file_item(entry: FileEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": entry.git_sha1, "size": entry.size, "path": entry.path}
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
    return item


def _dir_item(revision: Revision, path: str) -> dict[str, Any]:
    oid = hashlib.sha1(f"tree:{revision.commit}:{path}".encode()).hexdigest()
    return {"type": "directory", "oid": oid, "path": path}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _bucket(segs: list[str]) -> str:
    """The rate-limit bucket a Hub path counts against."""
    if segs[:1] == ["api"]:
        return "resolvers" if segs[1:2] == ["resolve-cache"] else "api"
    return "resolvers" if "resolve" in segs[1:3] else "pages"


class HubRoutes(BaseHandler):
    def _hub(self, url: Any, body: bytes) -> None:
        segs = url.path.split("/")[1:]
        head = segs[0] if segs else ""
        if head == "_sim":
            return self._control(segs[1:], body)  # type: ignore[attr-defined]
        bucket = _bucket(segs)
        self._extra_headers, refused = self.sim.ratelimits.hit(bucket)
        if refused:
            raise HttpError(429, None, f"You have exceeded our rate limit for {bucket}.")
        if head == "api":
            area = segs[1] if len(segs) > 1 else ""
            if area == "agent-harnesses":
                # 2.4.0 reads this as a registry object; a bare [] makes the `hf` CLI crash.
                return self._send_json(200, {"standardEnvVars": [], "harnesses": {}})
            if area == "telemetry":
                return self._send_json(200, {})
            if area == "models":
                return self._api_models(segs[2:], dict(parse_qsl(url.query)), body)
            if area == "resolve-cache" and segs[2:3] == ["models"]:
                return self._resolve_cache(segs[3:])
            raise HttpError(404, None, f"no such API route: {url.path}")
        return self._resolve(segs, url.path)

    def _split_repo(self, segs: list[str], markers: tuple[str, ...]) -> tuple[Repo | None, str, list[str]]:
        """Find the repo id at the start of raw path segments. Ids are usually org/name but may be
        a bare name; a known repo decides, otherwise the next marker does."""
        names = [unquote(s) for s in segs]
        store = self.sim.store
        if len(names) >= 2 and store.get(f"{names[0]}/{names[1]}"):
            return store.get(f"{names[0]}/{names[1]}"), f"{names[0]}/{names[1]}", segs[2:]
        if names and store.get(names[0]):
            return store.get(names[0]), names[0], segs[1:]
        if len(names) >= 2 and names[1] in markers:
            return None, names[0], segs[1:]
        return None, "/".join(names[:2]), segs[2:]

    def _access(self, repo: Repo | None, repo_id: str, *, files: bool) -> Repo:
        """The Hub's access rules. Missing and private-without-access repos look alike; gated
        repos show their metadata to everyone and guard only their files."""
        token = self._token()
        allowed = token in self.sim.tokens
        if repo is None or (repo.private and not allowed):
            if token is None:
                # Not even a code: the real Hub answers an anonymous miss like a bad login.
                raise HttpError(401, None, "Invalid username or password.", message_header=True)
            raise HttpError(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
        if repo.disabled:
            raise HttpError(403, "DisabledRepo", "Access to this resource is disabled.")
        if files and repo.gated and not allowed:
            raise HttpError(
                401 if token is None else 403,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it."
                if token is None
                else f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit https://huggingface.co/{repo_id} to ask for access.",
            )
        return repo

    @staticmethod
    def _pick_revision(repo: Repo, raw: list[str], need_rest: bool) -> tuple[Revision, str, list[str]]:
        """The revision is one quoted segment (refs%2Fpr%2F1), but accept it unquoted too."""
        if not raw or not raw[0]:
            raise HttpError(404, "RevisionNotFound", f"Invalid rev id: (empty) for {repo.repo_id}")
        for i in range(1, len(raw) + (0 if need_rest else 1)):
            rev = unquote("/".join(raw[:i]))
            found = repo.resolve(rev)
            if found is not None:
                return found, rev, raw[i:]
        raise HttpError(404, "RevisionNotFound", f"Invalid rev id: {unquote(raw[0])}")

    # -- JSON API ---------------------------------------------------------------------------

    def _api_models(self, segs: list[str], query: dict[str, str], body: bytes) -> None:
        found, repo_id, rest = self._split_repo(segs, ("revision", "tree", "paths-info", "auth-check"))
        self._subject = (repo_id, None)
        effects = self.sim.faults.take("api", repo_id, None, role="hub")
        self._status_fault(effects, "api")
        action = rest[0] if rest else ""
        repo = self._access(found, repo_id, files=action == "auth-check")
        if action == "auth-check" and len(rest) == 1:
            return self._send_json(200, {}, effects=effects)
        if action in ("", "revision"):
            raw = rest[1:] if action else [quote(repo.default_ref, safe="")]
            revision, _, _ = self._pick_revision(repo, raw, need_rest=False)
            return self._send_json(200, self._info(repo, revision, _truthy(query.get("blobs"))), effects=effects)
        if action == "paths-info" and self.command == "POST":
            revision, _, _ = self._pick_revision(repo, rest[1:], need_rest=False)
            wanted = [v for k, v in parse_qsl(body.decode()) if k == "paths"]
            items = []
            for path in dict.fromkeys(p.strip("/") for p in wanted):
                if path in revision.files:
                    items.append(_file_item(revision.files[path]))
                elif path in revision.dirs:
                    items.append(_dir_item(revision, path))
            return self._send_json(200, items, effects=effects)
        if action == "tree":
            revision, rev, path_segs = self._pick_revision(repo, rest[1:], need_rest=False)
            path = unquote("/".join(path_segs)).strip("/")
            return self._tree(repo, revision, rev, path, query, effects)
        raise HttpError(404, None, f"no such API route: {self.path}")

    def _info(self, repo: Repo, revision: Revision, blobs: bool) -> dict[str, Any]:
        siblings = []
        for entry in revision.files.values():
            sib: dict[str, Any] = {"rfilename": entry.path}
            if blobs:
                sib.update(size=entry.size, blobId=entry.git_sha1)
                if entry.lfs:
                    sib["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
            siblings.append(sib)
        author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
        return {
            "_id": repo.object_id,
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": author,
            "sha": revision.commit,
            "lastModified": _DATE,
            "createdAt": _DATE,
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": repo.disabled,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in revision.files.values()),
        }

    def _tree(self, repo: Repo, revision: Revision, rev: str, path: str, query: dict[str, str], effects: Fault | None) -> None:
        if path and path not in revision.dirs:
            raise HttpError(404, "EntryNotFound", f"{path} does not exist on {rev}")
        recursive = _truthy(query.get("recursive"))

        def wanted(p: str) -> bool:
            if recursive:
                return not path or p.startswith(path + "/")
            return posixpath.dirname(p) == path

        entries = [_dir_item(revision, d) for d in revision.dirs if wanted(d)]
        entries += [_file_item(e) for e in revision.files.values() if wanted(e.path)]
        entries.sort(key=lambda e: e["path"])
        try:
            cursor = max(0, int(query.get("cursor") or 0))
        except ValueError:
            raise HttpError(400, None, "bad cursor") from None
        size = max(1, int(self.sim.tree_page_size))
        page = entries[cursor : cursor + size]
        headers = {}
        if cursor + size < len(entries):
            next_query = urlencode({**query, "cursor": str(cursor + size)})
            suffix = "/" + quote(path) if path else ""
            host = self.headers.get("Host") or f"{self.sim.host}:{self.sim.port}"
            link = f"{self.sim.scheme}://{host}/api/models/{repo.repo_id}/tree/{quote(rev, safe='')}{suffix}?{next_query}"
            headers["Link"] = f'<{link}>; rel="next"'
        self._send_json(200, page, headers, effects)

    # -- files ------------------------------------------------------------------------------

    def _file(self, repo_id: str, found: Repo | None, raw_rev: list[str], need_rest: bool) -> tuple[Repo, Revision, str, FileEntry]:
        """Access checks, then the revision and the file, with the Hub's errors for each miss."""
        repo = self._access(found, repo_id, files=True)
        revision, _, path_segs = self._pick_revision(repo, raw_rev, need_rest=need_rest)
        path = unquote("/".join(path_segs))
        self._subject = (repo_id, path)
        entry = revision.files.get(path)
        if entry is None:
            raise HttpError(404, "EntryNotFound", f"{path} does not exist on {revision.commit}", {"X-Repo-Commit": revision.commit})
        return repo, revision, path, entry

    def _redirect(self, status: int, location: str, headers: dict[str, Any]) -> None:
        """A redirect with the short text body Express sends; Content-Length is that body's."""
        reason = "Found" if status == 302 else "Temporary Redirect"
        body = f"{reason}. Redirecting to {location}".encode()
        self._send_bytes(status, body, {**headers, "Location": location, "Content-Type": "text/plain; charset=utf-8"})

    def _resolve(self, segs: list[str], raw_path: str) -> None:
        found, repo_id, rest = self._split_repo(segs, ("resolve",))
        if not rest or rest[0] != "resolve":
            raise HttpError(404, None, f"not found: {self.path}")
        self._subject = (repo_id, None)
        repo, revision, path, entry = self._file(repo_id, found, rest[1:], need_rest=True)
        key = (repo.repo_id, path)
        kind = self.command.lower()
        common = {"X-Repo-Commit": revision.commit}
        # The real Hub serves small files of public namespaced repos from a cache behind a
        # same-origin 307; gated/private repos, canonical (no-namespace) repos and empty files
        # are answered directly.
        redirect_small = "/" in repo.repo_id and not (repo.gated or repo.private) and entry.size > 0
        if not (entry.lfs or redirect_small):
            effects = self.sim.faults.take(kind, repo.repo_id, path, role="hub")
            self.sim.stats.count(key, self.command)
            self._status_fault(effects, "resolvers")
            return self._send_file(entry, key, {**common, "ETag": f'"{entry.git_sha1}"'}, effects)
        # A redirect: only a status can apply to a GET; byte faults stay armed for the request
        # that carries the content.
        effects = self.sim.faults.take(kind, repo.repo_id, path, status_only=(kind == "get"), role="hub")
        if kind == "head" or effects is not None:
            self.sim.stats.count(key, self.command)
        self._status_fault(effects, "resolvers")
        if entry.lfs:
            return self._redirect(302, self._cdn_location(repo, revision, entry), {
                **common,
                "X-Linked-Size": entry.size,
                "X-Linked-Etag": f'"{entry.sha256}"',
                "X-Xet-Hash": entry.xet_hash,
                "ETag": f'"{entry.git_sha1}"',
                "Link": f'<{self.sim.url}/api/models/{repo.repo_id}/xet-read-token/{revision.commit}>; rel="xet-auth", '
                f'<{self.sim.cdn_url}{_XET_CAS}{entry.xet_hash}>; rel="xet-reconstruction-info"',
            })
        etag = f'"{entry.git_sha1}"'
        location = (
            f"/api/resolve-cache/models/{repo.repo_id}/{revision.commit}/{quote(path)}"
            f"?{quote(unquote(raw_path), safe='')}=&etag={quote(etag, safe='')}"
        )
        self._redirect(307, location, {**common, "X-Linked-Etag": etag})

    def _cdn_location(self, repo: Repo, revision: Revision, entry: FileEntry) -> str:
        name = posixpath.basename(entry.path)
        extra = {
            "X-Xet-Cas-Uid": "public",
            "response-content-disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";",
        }
        return self.sim.signed_path_url(f"/xet-bridge-us/{repo.object_id}/{entry.xet_hash}", extra)

    def _resolve_cache(self, segs: list[str]) -> None:
        """`/api/resolve-cache/models/{repo}/{commit}/{path}`: where small files really come from."""
        found, repo_id, rest = self._split_repo(segs, ())
        self._subject = (repo_id, None)
        repo, revision, path, entry = self._file(repo_id, found, rest, need_rest=True)
        key = (repo.repo_id, path)
        effects = self.sim.faults.take(self.command.lower(), repo.repo_id, path, role="hub")
        self.sim.stats.count(key, self.command)
        self._status_fault(effects, "resolvers")
        self._send_file(entry, key, {"X-Repo-Commit": revision.commit, "ETag": f'"{entry.git_sha1}"'}, effects)
