"""What the simulator counts: per-file bytes and requests, connections, and a request log."""

from __future__ import annotations

import collections
import threading
from typing import Any

# Columns of a per-file row.
BYTES, GETS, HEADS, CDN_GETS, CDN_HEADS = range(5)
_LOG_LIMIT = 20_000


class Stats:
    """Per (repo, path) counters: body bytes sent, GETs that were answered (not redirected) and
    HEADs, in total and on the CDN alone; accepted connections per port; the last requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[str, str], list[int]] = {}
        self._conns: collections.Counter[str] = collections.Counter()
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=_LOG_LIMIT)

    def _row(self, key: tuple[str, str]) -> list[int]:
        row = self._data.get(key)
        if row is None:
            row = self._data[key] = [0] * 5
        return row

    def add_bytes(self, key: tuple[str, str], n: int) -> None:
        with self._lock:
            self._row(key)[BYTES] += n

    def count(self, key: tuple[str, str], method: str, role: str = "hub") -> None:
        get = method == "GET"
        with self._lock:
            row = self._row(key)
            row[GETS if get else HEADS] += 1
            if role == "cdn":
                row[CDN_GETS if get else CDN_HEADS] += 1

    def connection(self, role: str) -> int:
        """Count an accepted connection; returns its number on that port (1, 2, ...)."""
        with self._lock:
            self._conns[role] += 1
            return self._conns[role]

    def connections(self, role: str) -> int:
        with self._lock:
            return self._conns[role]

    def log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def get(self, key: tuple[str, str]) -> tuple[int, int, int]:
        row = self.row(key)
        return row[BYTES], row[GETS], row[HEADS]

    def row(self, key: tuple[str, str]) -> list[int]:
        with self._lock:
            return list(self._data.get(key, [0] * 5))

    def reset(self) -> None:
        with self._lock:
            self._data.clear()
            self._conns.clear()
            self._log.clear()

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        with self._lock:
            for (repo, path), row in sorted(self._data.items()):
                out.setdefault(repo, {})[path] = {
                    "served_bytes": row[BYTES],
                    "requests": row[GETS],
                    "heads": row[HEADS],
                    "cdn_requests": row[CDN_GETS],
                    "cdn_heads": row[CDN_HEADS],
                }
            return out

    def connection_snapshot(self) -> dict[str, int]:
        with self._lock:
            return {role: self._conns[role] for role in ("hub", "cdn")}
