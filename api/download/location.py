"""Where a blob's bytes are: the Hub's resolve URL followed to the first CDN URL, shared by every
part of the blob and re-resolved when the CDN's signature runs out.

The real Hub answers small files with a 307 to a relative `/api/resolve-cache/...` URL (the Hub
itself) and LFS/Xet files with a 302 to a signed CDN URL valid for an hour. Only the Hub's
redirects are followed; the CDN is never sent a HEAD (an S3/CloudFront URL signed for GET may
refuse it): the first ranged GET validates it instead.
"""
from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import parse_qsl, urljoin, urlsplit

from ..errors import DownloadError
from .http import Connection, Origin, auth_headers
from .responses import TransientError, cdn_refusal, error_for

REDIRECTS = (301, 302, 303, 307, 308)
REFRESH_MARGIN = 60.0        # re-resolve this long before a signature runs out (less for short ones)


@dataclass(frozen=True)
class Location:
    url: str
    hub: bool                 # served by the Hub itself: its errors are the Hub's
    expires_at: float | None  # wall clock, from the signature
    resolved_at: float

    @property
    def refresh_at(self) -> float | None:
        """When to stop using this URL for new requests."""
        if self.expires_at is None:
            return None
        lifetime = self.expires_at - self.resolved_at
        return self.expires_at - min(REFRESH_MARGIN, lifetime / 4)


def signed_expiry(url: str) -> float | None:
    """The end of a signed URL's validity: CloudFront `Expires=<epoch>` or S3 `X-Amz-Date` +
    `X-Amz-Expires`; None for an unsigned URL."""
    q = {k.lower(): v for k, v in parse_qsl(urlsplit(url).query)}
    try:
        if "expires" in q:
            return float(q["expires"])
        if "x-amz-date" in q and "x-amz-expires" in q:
            start = datetime.strptime(q["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            return start.timestamp() + float(q["x-amz-expires"])
    except ValueError:
        return None
    return None


def resolve(url: str, token: str | None, hubs: frozenset[Origin], timeout: float, what: str, page: str,
            max_hops: int = 5) -> Location:
    """HEAD the resolve URL and follow the Hub's own redirects; stop at the first other origin."""
    for _ in range(max_hops):
        conn = Connection(Origin.of(url), timeout, timeout)
        try:
            resp = conn.request("HEAD", url, {"Accept-Encoding": "identity", **auth_headers(url, token, hubs)})
            resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise TransientError(f"{type(e).__name__} while resolving {what}: {e}") from e
        finally:
            conn.close()
        if resp.status in REDIRECTS:
            loc = resp.getheader("Location")
            if not loc:
                raise DownloadError(f"Redirect without Location for {what}.", "download_failed", permanent=True)
            url = urljoin(url, loc)
            if Origin.of(url) not in hubs:
                now = time.time()
                expires = signed_expiry(url)
                if expires is not None and expires <= now:
                    expires = None   # our clock is off: rely on the CDN's refusal instead
                return Location(url, False, expires, now)
            continue
        if resp.status == 200:
            return Location(url, True, None, time.time())
        raise error_for(resp.status, resp.headers, what, page)
    raise DownloadError(f"Too many redirects for {what}.", "download_failed", permanent=True)


class SharedLocation:
    """One location per blob with a generation number. A part that finds the URL expired asks for
    a refresh naming the generation it used: the first such request re-resolves, the others get the
    new URL. A URL that is refused before it ever served a byte, twice in a row, is a real refusal."""

    def __init__(self, resolver: Callable[[], Location], what: str, size: int):
        self._resolver = resolver
        self._what = what
        self._size = size
        self._lock = threading.Lock()
        self._loc: Location | None = None
        self.generation = 0
        self.refreshes = 0
        self._served = False          # the current generation has answered a GET with bytes
        self._unserved_refusals = 0

    def get(self) -> tuple[Location, int]:
        with self._lock:
            loc = self._loc
            if loc is None or (loc.refresh_at is not None and time.time() >= loc.refresh_at):
                self._refresh()
            return self._loc, self.generation

    def served(self, generation: int) -> None:
        if generation == self.generation:
            self._served = True

    def refused(self, generation: int, status: int) -> None:
        """A non-Hub origin answered `status` to a URL of `generation`: re-resolve once for all parts."""
        with self._lock:
            if generation != self.generation:
                return   # another part already refreshed it
            self._unserved_refusals = 0 if self._served else self._unserved_refusals + 1
            if self._unserved_refusals >= 2:
                raise cdn_refusal(status, self._what, self._size)
            self._refresh()

    def _refresh(self) -> None:
        fresh = self._resolver()
        if self._loc is not None:
            self.refreshes += 1
        self._loc = fresh
        self.generation += 1
        self._served = False
