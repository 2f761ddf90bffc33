"""How many connections a transfer uses, and which of its parts is a straggler.

CDNs cap each connection (often 30-100 MB/s) while the link is much faster, and one connection
can land on a slow path. A transfer starts with `DOWNLOAD_CONNECTIONS`, adds connections while
the total throughput still rises, and re-issues a part that runs far below the median part speed
on a fresh connection (Ollama does the same for its stragglers). See docs/downloads.md.
"""
from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

GROW_EVERY = 1.0         # seconds per growth step: long enough for new connections to show
MIN_GAIN = 1.10          # a step that adds less than 10 % throughput is given back, growth stops
REPROBE_AFTER = 20.0     # after that, one more step this often (other downloads may have ended)
STRAGGLER_AGE = 3.0      # a request younger than this is not judged
STRAGGLER_RATIO = 0.25   # below this fraction of the median part speed: re-issued ...
                         # ... when it would still need more than STRAGGLER_AGE at its speed
MAX_REISSUES = 3         # per part


@dataclass
class Running:
    """A part in flight on a worker's connection; the policy reads it, the worker owns it."""
    part: Any            # transfer.Part
    conn: Any            # http.Connection
    since: float
    done0: int
    reissue: bool = False

    def speed(self, now: float) -> float:
        return (self.part.done - self.done0) / max(now - self.since, 1e-3)


class ConnectionPolicy:
    def __init__(self, start: int, limit: int):
        self.target = max(1, start)
        self.limit = max(self.target, limit)
        self.peak = self.target
        self._window: tuple[float, int] | None = None
        self._trial: tuple[int, float] | None = None   # (target before the step, rate before it)
        self._next_probe = 0.0
        self._recent: deque[float] = deque(maxlen=16)   # speeds of finished part requests
        self._reissued: dict[int, int] = {}

    def grow(self, now: float, total_bytes: int, usable: int) -> int:
        """The number of workers wanted now. `usable`: parts queued plus parts in flight."""
        if self._window is None:
            self._window = (now, total_bytes)
            return self.target
        t0, b0 = self._window
        if now - t0 < GROW_EVERY:
            return self.target
        rate = (total_bytes - b0) / (now - t0)
        self._window = (now, total_bytes)
        if self._trial is not None:
            before, base = self._trial
            self._trial = None
            if rate < base * MIN_GAIN:
                self.target = before       # saturated (disk, link or the process budget)
                self._next_probe = now + REPROBE_AFTER
                return self.target
        room = min(self.limit, usable)
        if now >= self._next_probe and self.target < room and rate > 0:
            self._trial = (self.target, rate)
            # Doubling: a capped CDN reaches full speed within two steps (8 -> 16 in one), and a
            # step that big shows clearly whether it paid (MIN_GAIN).
            self.target = min(room, self.target + max(2, self.target))
            self.peak = max(self.peak, self.target)
        return self.target

    def finished(self, run: Running, now: float) -> None:
        if run.part.done - run.done0 >= 1 << 20:   # smaller answers say more about latency than speed
            self._recent.append(run.speed(now))

    def stragglers(self, now: float, running: list[Running]) -> list[Running]:
        judged = [(r, r.speed(now)) for r in running if now - r.since >= 1.0 and not r.reissue]
        pool = [s for _, s in judged] + list(self._recent)
        if len(pool) < 3:
            return []
        median = statistics.median(pool)
        out = []
        for r, s in judged:
            key = r.part.start
            if (now - r.since >= STRAGGLER_AGE and s < STRAGGLER_RATIO * median
                    and r.part.remaining > STRAGGLER_AGE * s and self._reissued.get(key, 0) < MAX_REISSUES):
                self._reissued[key] = self._reissued.get(key, 0) + 1
                out.append(r)
        return out
