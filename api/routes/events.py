from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from ..deps import JobsDep, LimitsDep
from ..jobs.store import ACTIVE
from .schemas import ERRORS

router = APIRouter(prefix="/api", tags=["jobs"])
RECENT = 50      # the newest jobs a dashboard shows
INTERVAL = 0.5


def _snapshot(jobs) -> list[dict]:
    """The newest jobs plus every unfinished one, however old, newest first."""
    recent = jobs.list(limit=RECENT)
    seen = {j["job_id"] for j in recent}
    older = [j for j in jobs.list(statuses=ACTIVE, limit=1000) if j["job_id"] not in seen]
    return sorted(recent + older, key=lambda j: j["created_at"] or "", reverse=True)


@router.get("/events", summary="Server-Sent Events for a dashboard: the 50 newest and every unfinished job "
                               "when it changes, and the limits when they change",
            responses={200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"},
                       **ERRORS})
async def events(request: Request, jobs: JobsDep, limits: LimitsDep):
    async def stream():
        sent: dict[str, str] = {}
        sent_limits = None
        while True:
            snapshot = await asyncio.to_thread(_snapshot, jobs)
            for job in reversed(snapshot):   # oldest first, so a client can prepend
                text = json.dumps(job)
                if sent.get(job["job_id"]) != text:
                    sent[job["job_id"]] = text
                    yield {"event": "job", "data": text}
            now = json.dumps(limits.get())
            if now != sent_limits:
                sent_limits = now
                yield {"event": "limits", "data": now}
            if await request.is_disconnected():
                return
            await asyncio.sleep(INTERVAL)

    return EventSourceResponse(stream(), ping=15)
