"""What an HTTP answer from the Hub or its CDN means for a download: go on, wait, retry, or fail."""
from __future__ import annotations

import email.utils
import time
from typing import Mapping

from huggingface_hub.utils import parse_ratelimit_headers

from ..errors import DownloadError

RATE_LIMIT_STATUSES = (429, 503)
EXPIRED_STATUSES = (400, 401, 403, 410)   # from a CDN: the signed URL is no longer good
MAX_WAIT = 300.0                           # the Hub's rate-limit windows last at most 300 s
GATED_HELP = ("accept the model's terms on its page ({page}) with your Hugging Face account, then set "
              "HF_TOKEN to a token of that account")
_ERROR_CODES = {
    "RepoNotFound": ("repo_not_found", "The repository does not exist on the Hub (or the token cannot see it)."),
    "RevisionNotFound": ("revision_not_found", "The revision does not exist in the repository."),
    "EntryNotFound": ("file_not_found", "A file of the repository is missing on the Hub."),
    "DisabledRepo": ("repo_disabled", "The repository has been disabled on the Hub; it cannot be downloaded."),
}
DISABLED_MESSAGE = "Access to this resource is disabled."


class TransientError(Exception):
    """Worth retrying: dropped connection, stall, 408/429/5xx. `retry_after` comes from the server;
    `reason` is set for a rate-limit wait, which does not use up the retry budget."""

    def __init__(self, detail: str, retry_after: float | None = None, reason: str | None = None):
        super().__init__(detail)
        self.retry_after = retry_after
        self.reason = reason

    @property
    def free(self) -> bool:
        return self.reason is not None


class Reissue(TransientError):
    """Not a failure: the request is sent again at once (a refreshed URL, a straggler's new connection)."""

    def __init__(self, detail: str):
        super().__init__(detail, retry_after=0.0, reason="")


class RangeIgnored(Exception):
    """The server answered a ranged request with the whole body."""


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def rate_limit_wait(status: int, headers: Mapping[str, str]) -> tuple[float, str] | None:
    """How long to wait after a 429/503 and why: the `RateLimit` reset (`t`) plus one second, as
    huggingface_hub waits, else `Retry-After`; None when the server says neither."""
    info = parse_ratelimit_headers(headers)
    if info is not None and (status == 429 or info.remaining == 0):
        return (min(info.reset_in_seconds + 1.0, MAX_WAIT),
                f'rate_limited: HTTP {status}, the Hub\'s "{info.resource_type}" limit resets in '
                f"{info.reset_in_seconds} s")
    after = parse_retry_after(headers.get("Retry-After"))
    if after is not None:
        return min(after, MAX_WAIT), f"rate_limited: HTTP {status} with Retry-After {after:g} s"
    return None


def error_for(status: int, headers: Mapping[str, str], what: str, page: str) -> Exception:
    """Map an answer of the Hub to a transient or permanent error, its `X-Error-Code` first."""
    get = headers.get
    hub_code = get("X-Error-Code")
    if hub_code == "GatedRepo":
        return DownloadError(f"The repository is gated ({what}): " + GATED_HELP.format(page=page) + ".",
                             "gated_repo", permanent=True)
    if get("X-Error-Message") == DISABLED_MESSAGE:
        hub_code = "DisabledRepo"
    if hub_code in _ERROR_CODES:
        code, detail = _ERROR_CODES[hub_code]
        return DownloadError(f"{detail} ({what})", code, permanent=True)
    if status in RATE_LIMIT_STATUSES:
        wait = rate_limit_wait(status, headers)
        if wait is not None:
            return TransientError(f"HTTP {status} for {what}", *wait)
    if status in (408, 429) or status >= 500:
        return TransientError(f"HTTP {status} for {what}")
    if status in (401, 403):
        return DownloadError(f"The Hub refused the token (HTTP {status}) for {what}.", "unauthorized", permanent=True)
    if status == 404:
        return DownloadError(f"Not found on the Hub: {what}.", "file_not_found", permanent=True)
    return DownloadError(f"Unexpected HTTP {status} for {what}.", "download_failed", permanent=True)


def cdn_refusal(status: int, what: str, size: int) -> DownloadError:
    """A CDN refused even a freshly signed URL: not an expiry. The Xet bridge answers 400 for files
    it only serves through hf_xet (about 400 GB and up)."""
    if status == 400:
        return DownloadError(
            f"The Hub's CDN refuses to serve {what} ({size / 1e9:.0f} GB) over plain HTTP (HTTP 400): files "
            "this large can only be fetched with the hf_xet client.", "file_too_large", permanent=True)
    return DownloadError(f"The Hub's CDN refused a freshly signed URL for {what} (HTTP {status}).",
                         "cdn_refused", permanent=True)
