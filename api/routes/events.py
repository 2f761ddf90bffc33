from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from ..deps import JobsDep, LimitsDep
from .schemas import ERRORS

router = APIRouter(prefix="/api", tags=["jobs"])
RECENT = 50      # the newest jobs a dashboard shows
INTERVAL = 0.5


@router.get("/events", summary="Server-Sent Events for a dashboard: every recent job when it changes, "
                               "and the limits when they change", responses=ERRORS)
async def events(request: Request, jobs: JobsDep, limits: LimitsDep):
    async def stream():
        sent: dict[str, str] = {}
        sent_limits = None
        while True:
            snapshot = await asyncio.to_thread(jobs.list, limit=RECENT)
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
