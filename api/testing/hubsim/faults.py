"""Injectable faults: what can go wrong between the Hub and a downloader."""

from __future__ import annotations

import dataclasses
import fnmatch
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

# Request kinds a fault can target. "get"/"head" are file content requests (hub resolve and
# CDN); "api" is the JSON API (revision, model info, tree).
KINDS = ("get", "head", "api", "any")
# Which port a fault can target: the Hub's or the CDN's (None = both).
WHERE = ("hub", "cdn")


@dataclass
class Fault:
    # Selectors
    repo: str | None = None
    path: str | None = None  # fnmatch glob over the file path inside the repo
    times: int | None = None  # number of matching requests affected; None = all of them
    on: str = "get"
    where: str | None = None
    # Effects
    drop_after: int | None = None
    rate_bps: int | None = None
    status: int | None = None
    retry_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 0.0
    ignore_range: bool = False
    corrupt_at: int | None = None
    conn_rate_bps: int | None = None  # cap per TCP connection, across its keep-alive responses
    # 429 with only `RateLimit: "<bucket>";r=0;t=<left>` for this many seconds from the first
    # matching Hub request; then the fault is spent. Never applies on the CDN.
    ratelimit_window: float | None = None

    def __post_init__(self) -> None:
        if self.on not in KINDS:
            raise ValueError(f"Fault.on must be one of {KINDS}, got {self.on!r}")
        if self.where is not None and self.where not in WHERE:
            raise ValueError(f"Fault.where must be one of {WHERE} or None, got {self.where!r}")
        if self.conn_rate_bps is not None and self.conn_rate_bps <= 0:
            raise ValueError("Fault.conn_rate_bps must be > 0")
        if self.ratelimit_window is not None and self.ratelimit_window <= 0:
            raise ValueError("Fault.ratelimit_window must be > 0")
        if self.times is not None and self.times < 0:
            raise ValueError("Fault.times must be >= 0")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError("Fault.rate_bps must be > 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Fault":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Fault fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def alters_bytes(self) -> bool:
        """True when the body cannot go out through sendfile untouched."""
        return (
            self.drop_after is not None
            or self.rate_bps is not None
            or self.conn_rate_bps is not None
            or self.stall_after is not None
            or self.corrupt_at is not None
        )

    def matches(self, kind: str, repo: str | None, path: str | None, role: str | None = None) -> bool:
        if self.on != "any" and self.on != kind:
            return False
        if self.where is not None and role is not None and self.where != role:
            return False
        if self.ratelimit_window is not None and role == "cdn":
            return False
        if self.repo is not None and self.repo != repo:
            return False
        if self.path is not None and (path is None or not fnmatch.fnmatchcase(path, self.path)):
            return False
        return True


_EFFECT_FIELDS = (
    "drop_after",
    "rate_bps",
    "status",
    "retry_after",
    "stall_after",
    "stall_seconds",
    "ignore_range",
    "corrupt_at",
    "conn_rate_bps",
    "ratelimit_window",
)
_DEFAULTS = Fault()


class FaultSet:
    """The active faults, with per-fault remaining counts kept apart from the caller's objects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[list[Any]] = []  # [fault, remaining or None, rate-limit window end or None]

    def replace(self, faults: Iterable[Fault]) -> None:
        items = [[f, f.times, None] for f in faults]
        with self._lock:
            self._items = items

    def clear(self) -> None:
        with self._lock:
            self._items = []

    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f, left, _ in self._items if left is None or left > 0]

    def take(
        self,
        kind: str,
        repo: str | None,
        path: str | None,
        *,
        status_only: bool = False,
        role: str | None = None,
    ) -> Fault | None:
        """Merge the effects of every matching fault (earlier faults win per field) and consume
        one use of each. status_only: the response is a redirect, so only a status can apply and
        byte faults must stay armed for the request that carries the content. A rate-limit
        window comes back as the seconds left in it."""
        merged: dict[str, Any] = {}
        now = time.monotonic()
        with self._lock:
            for item in self._items:
                fault, left, window_end = item
                if left is not None and left <= 0:
                    continue
                if not fault.matches(kind, repo, path, role):
                    continue
                if status_only and fault.status is None and fault.ratelimit_window is None:
                    continue
                if fault.ratelimit_window is not None:
                    if window_end is None:
                        window_end = item[2] = now + fault.ratelimit_window
                    if now >= window_end:
                        item[1] = 0  # the window is over: spent
                        continue
                    merged.setdefault("ratelimit_window", window_end - now)
                if left is not None:
                    item[1] = left - 1
                for name in _EFFECT_FIELDS:
                    value = getattr(fault, name)
                    if name not in merged and value != getattr(_DEFAULTS, name):
                        merged[name] = value
        if not merged:
            return None
        return Fault(on="any", **merged)
