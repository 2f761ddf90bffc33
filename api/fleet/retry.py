"""Fleet-level retries: a node whose fetch failed for a reason a new run can mend gets one.

The node CLI already retries each connection (MAX_RETRIES, without progress); this is the layer
above it, for a node whose whole run failed: its retry budget spent on a flaky link, its container
killed. After a backoff, the same command runs again as a global job constrained away from every
other node, up to FLEET_NODE_RETRIES times. The node's bytes stay in its cache (the .incomplete
files and its own job table), so the new run resumes where the last one stopped. Nodes that
completed or were skipped, and nodes that failed for a reason no retry mends (gated, not found,
no space), are not touched.

Swarm 20.10 lets the tasks of a removed job service run to their end; a retry waits for those on
its nodes first, so that two runs never share one node's cache.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from ..errors import ApiError
from .globaljob import GlobalJob, NodeRun, interrupted
from .swarm import JobSpec, Swarm

log = logging.getLogger(__name__)
# A new run can mend these: the link (or the Hub) failed for longer than the node's own retry
# budget, or the run died without its answer (OOM kill, node CLI crash). Everything else (gated,
# not found, no space, checksum mismatch twice) would fail the same way again.
RETRYABLE = frozenset({"network_error", "hub_unreachable", "node_task_failed", "internal_error"})
MAX_DELAY = 600.0
QUIET_POLL = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    retries: int          # new runs per node after its first
    backoff: float        # seconds before the first new run; doubles for each next one

    def delay(self, retry: int) -> float:
        return min(self.backoff * 2 ** (retry - 1), MAX_DELAY)


def retryable(run: NodeRun) -> bool:
    # A rejected task never started (image or mount path missing on the node): it would again.
    return run.state == "failed" and run.error_code in RETRYABLE and run.task_state != "rejected"


def carry(prev: NodeRun | None, new: NodeRun) -> NodeRun:
    """A node's entry from its new run, counting the runs before it."""
    if prev is None:
        return new
    return replace(new, attempts=prev.attempts + 1,
                   earlier_errors=[*prev.earlier_errors, prev.error_code or prev.state])


class RetryingJob:
    """A global job, then new runs on the nodes that failed with a retryable error."""

    def __init__(self, swarm: Swarm, spec: JobSpec, timeout: float, abort: threading.Event,
                 on_update: Callable[[list[NodeRun]], None], policy: RetryPolicy):
        self.swarm = swarm
        self.spec = spec
        self.deadline = time.monotonic() + timeout
        self.abort = abort
        self.on_update = on_update
        self.policy = policy

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self) -> list[NodeRun]:
        job = GlobalJob(self.swarm, self.spec, self._left(), self.abort, self._show)
        runs = {r.node_id: r for r in job.run()}
        for retry in range(1, self.policy.retries + 1):
            todo = self._eligible([nid for nid, r in runs.items() if retryable(r)])
            wait = self.policy.delay(retry)
            if not todo or self._left() <= wait:
                break
            log.info("job service %s: retry %d on %d node(s) in %.1f s", self.spec.name, retry, len(todo), wait)
            if self.abort.wait(wait):
                raise interrupted(self.spec.name)
            self._quiet(job.service_id, todo)
            job = GlobalJob(self.swarm, self._retry_spec(retry, [n for n in runs if n not in todo]), self._left(),
                            self.abort, lambda new: self._show(list(self._merge(runs, new).values())))
            try:
                new = job.run()
            except ApiError as e:   # the nodes left the fleet meanwhile: their last answer stands
                if e.code != "no_eligible_nodes":
                    raise
                break
            runs = self._merge(runs, new)
        return [runs[k] for k in sorted(runs)]

    @staticmethod
    def _merge(runs: dict[str, NodeRun], new: list[NodeRun]) -> dict[str, NodeRun]:
        return {**runs, **{r.node_id: carry(runs.get(r.node_id), r) for r in new}}

    def _show(self, runs: list[NodeRun]) -> None:
        """A node that failed with a retry left shows `retrying` until its next run answers."""
        self.on_update(sorted((replace(r, state="retrying") if retryable(r) and r.attempts <= self.policy.retries
                               else r for r in runs), key=lambda r: r.node_id))

    def _eligible(self, node_ids: list[str]) -> list[str]:
        """The nodes still active and ready: a drained or down node is not retried."""
        if not node_ids:
            return []
        ok = {n["ID"] for n in self.swarm.nodes()
              if (n.get("Spec") or {}).get("Availability", "active") == "active"
              and (n.get("Status") or {}).get("State", "ready") == "ready"}
        return sorted(nid for nid in node_ids if nid in ok)

    def _quiet(self, service_id: str | None, node_ids: list[str]) -> None:
        """Wait until no task of the last run still runs on these nodes."""
        logged = False
        while service_id and (live := self.swarm.live_tasks(service_id, node_ids)):
            if not logged:
                log.info("job service %s: waiting for %d task(s) of the last run", self.spec.name, len(live))
                logged = True
            if self._left() <= 0:
                return   # the new run is given no time and fails with node_timeout
            if self.abort.wait(QUIET_POLL):
                raise interrupted(self.spec.name)

    def _retry_spec(self, retry: int, others: list[str]) -> JobSpec:
        # Constraints are ANDed: `node.id!=` each other node leaves the nodes to retry (and a node
        # that joined since, which gets its first run).
        return replace(self.spec, name=f"{self.spec.name}-r{retry}",
                       constraints=[*self.spec.constraints, *(f"node.id!={nid}" for nid in sorted(others))])
