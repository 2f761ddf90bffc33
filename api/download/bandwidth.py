"""Bandwidth limits: one token bucket shared by every connection of the process, plus an optional
bucket per job. A download thread calls `consume(n)` after it has read n bytes; the call returns
when the bytes fit in the budget, so the socket is read no faster than the limit (TCP flow control
then slows the sender, as with curl's --limit-rate and aria2's --max-overall-download-limit).

The buckets run on the monotonic clock and allow a debt: a reader takes its bytes at once and
waits until the bucket is back to zero. Waits are cut into slices of at most 0.1 s, so a rate
changed at run time applies to the waiting threads within that slice.
"""
from __future__ import annotations

import itertools
import math
import re
import threading
import time
from typing import Callable

SLICE = 0.1          # longest single sleep: a new rate or an abort is seen this soon
BURST_SECONDS = 0.5  # what an idle bucket may save up: late wake-ups on a busy CPU lose nothing
MIN_READ = 16 << 10
THROTTLED_FOR = 1.0  # a job counts as throttled this long after it last had to wait

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30}
# The OpenAPI document carries this pattern; parse_rate accepts exactly what it matches.
RATE_PATTERN = r"^ *[0-9]{1,15}(\.[0-9]{1,6})? *([kKmMgG]([iI]?[bB])?|[bB])? *(/ *[sS])? *$"
_RATE = re.compile(RATE_PATTERN)
_THROTTLE_IDS = itertools.count(1)


def parse_rate(value: str | int | float | None) -> int:
    """'40MB/s', '40M', '512KiB/s', '1.5GB', 40000000 -> bytes per second; None, '' or 0 -> 0
    (unlimited). Decimal units (MB = 10^6 bytes) like the Hub and `curl --limit-rate`'s docs;
    KiB/MiB/GiB are binary. Raises ValueError on anything else."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise ValueError("a rate is a number of bytes per second, not true/false")
        return 0
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a rate cannot be negative")
        return math.ceil(value)
    if not value.strip():
        return 0
    m = _RATE.match(value)
    if not m:
        raise ValueError(f"{value[:40]!r} is not a rate like '40MB/s', '512KiB/s' or a number of bytes per second")
    number = value.strip().split(" ")[0].rstrip("bBiIkKmMgG/sS")
    return math.ceil(float(number) * _UNITS[(m.group(2) or "").lower()])   # 0.5 B/s is a limit, not 0


def format_rate(bps: int) -> str:
    if not bps:
        return "unlimited"
    for unit, size in (("GB/s", 10**9), ("MB/s", 10**6), ("kB/s", 10**3)):
        if bps >= size:
            return f"{bps / size:.3g} {unit}"
    return f"{bps} B/s"


class TokenBucket:
    """Thread-safe; rate 0 means unlimited."""

    def __init__(self, rate: int = 0, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = max(0, int(rate))
        self._tokens = 0.0
        self._stamp = clock()
        self._listeners: list[Callable[[int], None]] = []

    def subscribe(self, fn: Callable[[int], None]) -> None:
        """fn(rate) after every set_rate: the transfer process mirrors this bucket (remote.py)."""
        self._listeners.append(fn)

    @property
    def rate(self) -> int:
        return self._rate

    def set_rate(self, rate: int) -> None:
        with self._lock:
            self._refill()
            self._rate = max(0, int(rate))
            if not self._rate:
                self._tokens = 0.0   # no debt carried into a later limit
        for fn in self._listeners:
            fn(self._rate)

    def _refill(self) -> None:
        now = self._clock()
        if self._rate:
            self._tokens = min(self._rate * BURST_SECONDS, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def take(self, n: int) -> None:
        with self._lock:
            self._refill()
            if self._rate:
                self._tokens -= n

    def wait_time(self) -> float:
        """Seconds until the debt is paid at the current rate (0: go on)."""
        with self._lock:
            self._refill()
            if not self._rate or self._tokens >= 0:
                return 0.0
            return -self._tokens / self._rate

    def consume(self, n: int, abort: threading.Event | None = None) -> float:
        """Take n bytes and wait until they fit; returns the seconds waited."""
        self.take(n)
        return self.wait(abort)

    def wait(self, abort: threading.Event | None = None) -> float:
        waited = 0.0
        while (t := self.wait_time()) > 0:
            t = min(t, SLICE)
            if abort is not None:
                if abort.wait(t):
                    break
            else:
                time.sleep(t)
            waited += t
        return waited


class JobThrottle:
    """What a job's transfers call: its own bucket (max_bps), then the process-wide one.
    `throttled` says whether either limit held the job back in the last second."""

    def __init__(self, shared: TokenBucket, max_bps: int = 0, clock=time.monotonic):
        self.shared = shared
        self.own = TokenBucket(max_bps, clock) if max_bps else None
        self._clock = clock
        self._held_at = -1e9
        self.key = next(_THROTTLE_IDS)   # names the job's bucket in the transfer process

    @property
    def max_bps(self) -> int:
        return self.own.rate if self.own else 0

    def read_size(self, n: int) -> int:
        """Reads of 5 ms of the rate: with 16 connections a throttled download still moves in steps
        of under 0.1 s, not in bursts of one full buffer per connection."""
        rates = [r for r in (self.max_bps, self.shared.rate) if r]
        return min(n, max(MIN_READ, min(rates) // 200)) if rates else n

    def __call__(self, n: int, abort: threading.Event | None = None) -> None:
        waited = self.own.consume(n, abort) if self.own else 0.0
        waited += self.shared.consume(n, abort)
        if waited > 0:
            self.mark_held()

    def mark_held(self) -> None:
        """A limit held this job back just now (also told by the transfer process)."""
        self._held_at = self._clock()

    @property
    def throttled(self) -> bool:
        return self._clock() - self._held_at < THROTTLED_FOR
