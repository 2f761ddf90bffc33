"""The Hub's fixed-window rate limits, announced on every answer with the IETF draft headers
`RateLimit: "<bucket>";r=<left>;t=<seconds to reset>` and
`RateLimit-Policy: "fixed window";"<bucket>";q=<quota>;w=<window>`."""

from __future__ import annotations

import math
import threading
import time

# Anonymous quotas per 5-minute window as the Hub announces them.
DEFAULT_QUOTAS = {"resolvers": 3000, "api": 500, "pages": 100}
DEFAULT_WINDOW = 300


def headers(bucket: str, left: int, reset_in: float, quota: int, window: int) -> dict[str, str]:
    return {
        "RateLimit": f'"{bucket}";r={max(0, left)};t={max(1, math.ceil(reset_in - 1e-6))}',
        "RateLimit-Policy": f'"fixed window";"{bucket}";q={quota};w={window}',
    }


class RateLimits:
    """One client (everything arrives from loopback). Counting always runs; refusing with 429
    once a bucket is used up happens only when `enforce` is set, so that a long test session
    sharing one simulator is not throttled by accident."""

    def __init__(self, quotas: dict[str, int] | None = None, window: int = DEFAULT_WINDOW, enforce: bool = False) -> None:
        self.quotas = dict(DEFAULT_QUOTAS if quotas is None else quotas)
        self.window = window
        self.enforce = enforce
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # bucket -> (window start, used)

    def hit(self, bucket: str) -> tuple[dict[str, str], bool]:
        """Count one request: its headers, and whether it must be refused."""
        quota = self.quotas.get(bucket, DEFAULT_QUOTAS.get(bucket, 1000))
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get(bucket, (now, 0))
            if now - start >= self.window:
                start, used = now, 0
            used += 1
            self._windows[bucket] = (start, used)
        reset_in = start + self.window - now
        over = used > quota
        return headers(bucket, quota - used, reset_in, quota, self.window), over and self.enforce

    def exhausted(self, bucket: str, reset_in: float) -> dict[str, str]:
        """The headers of a 429: nothing left until the window resets."""
        return headers(bucket, 0, reset_in, self.quotas.get(bucket, 1000), self.window)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
