"""Follow a Swarm rolling update of the inference service to its end.

Swarm does the work: `update_config` (one node at a time, stop-first, monitor) and
`failure_action: rollback`. We only read `UpdateStatus` and the tasks until the update reaches
`completed`, or a rollback (or pause) ends it, or the timeout passes.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from .globaljob import interrupted
from .swarm import Swarm

DONE = "completed"
ROLLED_BACK = ("rollback_completed", "rollback_paused")
STOPPED = ("paused",) + ROLLED_BACK
KEY = "DEFAULT_MODEL"


def task_view(swarm: Swarm, service_id: str) -> list[dict]:
    """Per node: the task Swarm wants running now, its state and the model its env names."""
    latest: dict[str, dict] = {}
    for t in sorted(swarm.tasks(service_id), key=lambda t: t.created):
        if t.desired == "running" and t.node_id:
            latest[t.node_id] = {"node_id": t.node_id, "task_id": t.id, "state": t.state,
                                 "model_id": t.env.get(KEY), "error": t.error}
    return [latest[k] for k in sorted(latest)]


def failure_reasons(swarm: Swarm, service_id: str, model_id: str) -> list[str]:
    """The tasks that ran the new model and ended by themselves: why Swarm rolled back.

    A task Swarm stopped (the rollback) ends `shutdown`; one that failed, was refused, or exited
    on its own (an unhealthy container killed, a server that quit with status 0) ends in one of
    these states. Swarm's own "rolled back due to failure" message lasts only until the rollback
    completes, so these stay the reliable record."""
    return sorted({f"node {t.node_id[:12]}: {t.error or f'task {t.state} (exit code {t.exit_code})'}"
                   for t in swarm.tasks(service_id)
                   if t.env.get(KEY) == model_id and (t.error or t.state in ("failed", "rejected", "complete"))})


def follow(swarm: Swarm, name: str, started_before: str | None, timeout: float, abort: threading.Event,
           on_update: Callable[[dict], None], poll: float = 1.0) -> dict:
    """Returns {"update_state", "message", "messages", "tasks"}; update_state is None after a timeout.

    `messages` keeps every distinct message of the update: the one that says why it rolled back
    ("update rolled back due to failure or early termination of task ...") is replaced by
    "rollback completed" at the end."""
    deadline = time.monotonic() + timeout
    messages: list[str] = []
    while True:
        svc = swarm.service(name)
        status = svc.get("UpdateStatus") or {}
        ours = bool(status) and status.get("StartedAt") != started_before
        if ours and status.get("Message") and status["Message"] not in messages:
            messages.append(status["Message"])
        view = {"update_state": status.get("State") if ours else "pending",
                "message": status.get("Message") if ours else None, "messages": list(messages),
                "tasks": task_view(swarm, svc["ID"])}
        on_update(view)
        if ours and (status.get("State") == DONE or status.get("State") in STOPPED):
            return view
        if time.monotonic() > deadline:
            return {**view, "update_state": None}
        if abort.wait(poll):
            raise interrupted(f"the rollout of {name}")
