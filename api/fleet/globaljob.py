"""One node-CLI command on every eligible node, as a Swarm `global-job` service.

Swarm places one task per node (the inference service's constraints); this follows the tasks'
states and their stdout (the CLI's JSON lines) through the manager, folds them into one entry per
node, and removes the job service at the end whatever happened.

A node drained or down while its task still runs is `skipped`, not failed: it left the fleet, and
the others finish without it (its bytes stay on its disk for the next run).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..errors import ApiError
from .swarm import JobSpec, Swarm, Task

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
NO_TASK_GRACE = 20.0    # seconds for Swarm to place the first task before "no eligible node"
ENDED = ("complete", "failed", "rejected")   # a task that ran (or could not start) and exited


@dataclass
class NodeRun:
    node_id: str
    hostname: str = ""
    state: str = "pending"            # pending | running | complete | failed | skipped | retrying
    task_state: str | None = None
    phase: str | None = None          # the node CLI's own step: downloading, verifying
    bytes_done: int = 0
    bytes_total: int = 0
    speed_bps: float = 0.0
    error: str | None = None
    error_code: str | None = None
    result: dict | None = None
    models: list[dict] = field(default_factory=list)   # `list` only: the node's cached models
    attempts: int = 1                 # runs of the command on this node (retry.py adds more)
    earlier_errors: list[str] = field(default_factory=list)   # error codes of the failed runs before

    @property
    def finished(self) -> bool:
        return self.state in ("complete", "failed", "skipped")

    def to_json(self) -> dict:
        d = asdict(self)
        if not self.models:
            d.pop("models")
        return d


def _events(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def fold(task: Task, node: dict | None, lines: list[str]) -> NodeRun:
    """One node's entry from its latest task, the node's own state and the task's stdout."""
    desc = (node or {}).get("Description") or {}
    run = NodeRun(task.node_id, desc.get("Hostname", ""), task_state=task.state)
    events = _events(lines)
    progress = [e for e in events if e.get("event") == "progress"]
    if progress:
        p = progress[-1]
        run.bytes_done, run.bytes_total = p.get("bytes_done") or 0, p.get("bytes_total") or 0
        run.speed_bps = p.get("speed_bps") or 0.0
        run.phase = p.get("status")
    run.models = [{k: v for k, v in e.items() if k not in ("event", "node")} for e in events
                  if e.get("event") == "model"]
    last = events[-1] if events else {}
    availability = ((node or {}).get("Spec") or {}).get("Availability", "active")
    node_state = ((node or {}).get("Status") or {}).get("State", "ready")
    if task.state == "complete" and last.get("event") == "result":
        run.state, run.result = "complete", {k: v for k, v in last.items() if k not in ("event", "node")}
        run.bytes_done = run.bytes_total = run.result.get("bytes", run.bytes_total)
        run.speed_bps = 0.0
    elif task.state in ("failed", "rejected", "complete"):
        run.state = "failed"
        if last.get("event") == "error":
            run.error, run.error_code = last.get("detail"), last.get("error")
        else:
            run.error = task.error or f"task {task.state} without a result"
            run.error_code = "node_task_failed"
    elif task.terminal or availability != "active" or node_state != "ready":
        run.state = "skipped"
        run.error = (f"node {availability}" if availability != "active" else
                     f"node {node_state}" if node_state != "ready" else f"task {task.state}")
        run.error_code = "node_unavailable"
    else:
        run.state = "running" if task.state in ("running", "starting") else "pending"
    return run


def answer(tasks: list[Task]) -> Task:
    """The task that speaks for a node: its first that ran to an end, else its latest.

    Swarm (20.10 at least) starts a global job's failed task again and again whatever its restart
    policy says; following the latest task would wait for a success that never comes. The node
    CLI has retried already, so its first exit is the node's answer."""
    return next((t for t in tasks if t.state in ENDED), tasks[-1])


def interrupted(what: str) -> ApiError:
    """The API is stopping: the job ends failed (a fleet job is not resumed at the next start)."""
    return ApiError(f"The service stopped while {what} ran; run it again.", code="interrupted", status=503)


class GlobalJob:
    def __init__(self, swarm: Swarm, spec: JobSpec, timeout: float, abort: threading.Event,
                 on_update: Callable[[list[NodeRun]], None] | None = None):
        self.swarm = swarm
        self.spec = spec
        self.timeout = timeout
        self.abort = abort
        self.on_update = on_update or (lambda runs: None)
        self.service_id: str | None = None

    def run(self) -> list[NodeRun]:
        self.service_id = service_id = self.swarm.create_job(self.spec)
        log.info("job service %s (%s) created", self.spec.name, service_id[:12])
        try:
            return self._follow(service_id)
        finally:
            self.swarm.remove(service_id)

    def snapshot(self, service_id: str) -> list[NodeRun]:
        by_node: dict[str, list[Task]] = {}
        for t in sorted(self.swarm.tasks(service_id), key=lambda t: t.created):
            if t.node_id:
                by_node.setdefault(t.node_id, []).append(t)
        if not by_node:
            return []
        nodes = {n["ID"]: n for n in self.swarm.nodes()}
        logs = self.swarm.stdout_lines(service_id)
        chosen = {nid: answer(ts) for nid, ts in by_node.items()}
        return [fold(t, nodes.get(nid), logs.get(t.id, [])) for nid, t in sorted(chosen.items())]

    def _follow(self, service_id: str) -> list[NodeRun]:
        started = time.monotonic()
        while True:
            runs = self.snapshot(service_id)
            self.on_update(runs)
            elapsed = time.monotonic() - started
            if runs and all(r.finished for r in runs):
                return runs
            if not runs and elapsed > NO_TASK_GRACE:
                raise ApiError("No node can run the inference service (placement constraints, availability).",
                               code="no_eligible_nodes", status=409)
            if elapsed > self.timeout:
                for r in runs:
                    if not r.finished:
                        r.state, r.error_code = "failed", "node_timeout"
                        r.error = f"no result after {self.timeout:.0f} s"
                return runs
            if self.abort.wait(POLL_SECONDS):
                raise interrupted(self.spec.name)
