"""The CDN's side: signed URLs checked for signature and expiry, bytes served with Range."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

from .http_base import BaseHandler, HttpError


def _filename(disposition: str) -> str | None:
    """The file name of `inline; filename*=UTF-8''a.bin; filename="a.bin";`."""
    for part in disposition.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "filename*" and value.startswith("UTF-8''"):
            return unquote(value[7:])
    return None


class CdnRoutes(BaseHandler):
    def _cdn(self, url: Any) -> None:
        segs = url.path.split("/")[1:]
        if len(segs) != 3 or segs[0] != "xet-bridge-us":
            raise HttpError(404, "NoSuchKey", "The specified key does not exist.")
        if self.command not in ("GET", "HEAD"):
            raise HttpError(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        repo = self.sim.store.by_object_id(segs[1])
        entry = repo.by_xet_hash(segs[2], _filename(query.get("response-content-disposition", ""))) if repo else None
        if repo is None or entry is None:
            raise HttpError(404, "NoSuchKey", "The specified key does not exist.")
        key = (repo.repo_id, entry.path)
        self._subject = key
        self.sim.stats.count(key, self.command, role="cdn")
        refusal = self.sim.signer.refusal(url.path, query, self.command)
        if refusal:
            raise HttpError(403, "AccessDenied", refusal)
        effects = self.sim.faults.take(self.command.lower(), repo.repo_id, entry.path, role="cdn")
        self._status_fault(effects)
        if entry.size > self.sim.cdn_max_size:
            # The Xet bridge does not reconstruct files this big over plain HTTP; only hf_xet can.
            raise HttpError(400, "InvalidRequest", "File too large to be served over HTTP; use a Xet client.")
        headers = {"ETag": f'"{entry.xet_hash}"'}
        if "response-content-disposition" in query:
            headers["Content-Disposition"] = query["response-content-disposition"]
        self._send_file(entry, key, headers, effects)
