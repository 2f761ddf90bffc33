"""The plain data of a blob transfer: what to fetch, how, and its parts."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .bandwidth import JobThrottle
from .http import Origin


def lower_priority() -> None:
    """Download threads yield the CPU to the event loop when both cores are busy (Linux: nice is
    per thread). Best effort: without permission it stays as it is."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (OSError, AttributeError):
        pass


class Aborted(Exception):
    """Every job that wanted this blob let go of it (pause or cancel); progress is saved."""


@dataclass(frozen=True)
class BlobSpec:
    key: str          # the cache's blob name: sha256 for LFS files, git blob sha1 otherwise
    size: int
    url: str          # the Hub's resolve URL (it may redirect to a CDN)
    lfs: bool
    what: str         # "org/name@commit:path", for logs and error messages
    page: str = ""    # the model's page on the Hub, for error details


@dataclass(frozen=True)
class TransferOptions:
    connections: int = 8
    part_size: int = 64 << 20
    stall_timeout: float = 30.0
    connect_timeout: float = 15.0
    max_retries: int = 8
    backoff_max: float = 30.0
    token: str | None = None
    on_bytes: Callable[[int], None] | None = None   # metrics hook
    slots: threading.Semaphore | None = None        # connections shared by every transfer of the process
    max_connections: int = 16                       # a transfer grows up to this many (MAX_TOTAL_CONNECTIONS)
    hubs: frozenset[Origin] = frozenset()           # the Hub's origins: the token goes there, nowhere else
    throttle: JobThrottle | None = None             # bandwidth limits (bandwidth.py): shared bucket + job cap


@dataclass
class Part:
    start: int
    end: int          # exclusive
    done: int = 0     # bytes written from start

    @property
    def remaining(self) -> int:
        return self.end - self.start - self.done


class TransferState:
    """What the engine and the registry read of a blob transfer, wherever it runs."""

    def __init__(self, spec: BlobSpec, staging: Path, opts: TransferOptions):
        self.spec = spec
        self.opts = opts
        self.data_path = staging / f"{spec.key}.part"
        self.state_path = staging / f"{spec.key}.json"
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.retries = 0
        self.holders = 0
        self.waiting: tuple[float, str] | None = None   # (until, wall clock; why) while a rate limit is waited out

    def discard(self) -> None:
        self.data_path.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)
