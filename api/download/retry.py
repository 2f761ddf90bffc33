"""The retry budget of a part: attempts without progress; rate-limit waits and re-issues are free."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from tenacity import wait_random_exponential

MAX_FREE = 20     # free retries in a row without progress: a Hub that rate-limits forever still ends


@dataclass
class Budget:
    part: Any                 # transfer.Part: its `done` is the progress
    max_retries: int
    backoff_max: float
    _seen: int = -1
    _failures: int = 0
    _free: int = 0
    _wait: wait_random_exponential = field(init=False)

    def __post_init__(self):
        self._wait = wait_random_exponential(multiplier=0.5, max=self.backoff_max)

    def stop(self, state) -> bool:
        """Called once per failed attempt: count it, unless it is free."""
        if self.part.done != self._seen:
            self._seen, self._failures, self._free = self.part.done, 0, 0
        exc = state.outcome.exception() if state.outcome else None
        if getattr(exc, "free", False) and self._free < MAX_FREE:
            self._free += 1
        else:
            self._failures += 1
        return self._failures > self.max_retries

    def wait(self, state) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after + (0.1 if retry_after else 0.0)
        return self._wait(SimpleNamespace(attempt_number=max(1, self._failures)))
