"""Hub calls made while a request waits: their own bounded threads and a deadline.

A submit plans against the Hub so that a permanent error (no such repo, gated) answers at once.
A stalled Hub must not turn that into a stalled API: the request's work runs in a small pool of
its own (never the threads the read routes run on), and the Hub call in another bounded pool that
the request waits on only until its deadline. Past it the job is queued without a plan and its
worker plans with the usual retries.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Callable, TypeVar

T = TypeVar("T")
REQUEST_THREADS = 8   # requests waiting on the Hub at once; the rest wait their turn, deadline running


class HubGate:
    def __init__(self, workers: int, timeout: float):
        self.timeout = timeout
        self._hub = ThreadPoolExecutor(workers, thread_name_prefix="hub-call")
        self._requests = ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="hub-request")

    def deadline(self) -> float:
        return time.monotonic() + self.timeout

    def call(self, fn: Callable[..., T], *args, deadline: float | None = None, **kw) -> T | None:
        """fn's result, or None when the deadline passes first (a started call runs on, bounded by
        the pool; one not yet started is dropped)."""
        fut = self._hub.submit(fn, *args, **kw)
        left = (deadline if deadline is not None else self.deadline()) - time.monotonic()
        try:
            return fut.result(timeout=max(0.0, left))
        except FuturesTimeout:
            fut.cancel()
            return None

    async def run(self, fn: Callable[..., T], *args, **kw) -> T:
        """fn(*args, deadline=..., **kw) in the request pool, awaited: the event loop and the
        threads of the other routes stay free however long the Hub takes. The deadline starts now,
        so time spent waiting for a request thread counts."""
        return await asyncio.wrap_future(self._requests.submit(fn, *args, deadline=self.deadline(), **kw))

    def close(self) -> None:
        self._requests.shutdown(wait=False, cancel_futures=True)
        self._hub.shutdown(wait=False, cancel_futures=True)
