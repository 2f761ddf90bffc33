"""Small reads from the Hub through huggingface_hub's own session (redirects to the CDN followed,
the token sent only to the Hub): whole small files, or byte ranges of large ones."""
from __future__ import annotations

from huggingface_hub import hf_hub_url
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

MAX_SMALL_FILE = 4 << 20


class HubReader:
    def __init__(self, endpoint: str, token: str | None, repo_id: str, commit: str, timeout: float):
        self.endpoint, self.token, self.repo_id, self.commit, self.timeout = endpoint, token, repo_id, commit, timeout

    def url(self, path: str) -> str:
        return hf_hub_url(self.repo_id, path, revision=self.commit, endpoint=self.endpoint)

    def headers(self) -> dict:
        return build_hf_headers(token=self.token or False)

    def range(self, path: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of a file."""
        if end <= start:
            return b""
        r = get_session().get(self.url(path), headers={**self.headers(), "Range": f"bytes={start}-{end - 1}"},
                              timeout=self.timeout)
        hf_raise_for_status(r)
        body = r.content
        # A server that ignores Range sends the whole file: keep only what was asked for.
        return body[start:end] if r.status_code == 200 else body[: end - start]

    def small(self, path: str) -> bytes:
        return self.range(path, 0, MAX_SMALL_FILE)
