from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from sse_starlette.sse import EventSourceResponse

from ..deps import JobsDep
from ..jobs.store import FINAL
from ._params import Fields
from .schemas import ERRORS, Job

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="the job's id")]
Status = Literal["queued", "downloading", "verifying", "paused", "complete", "failed", "cancelled", "running"]
Kind = Literal["download", "verify", "switch", "delete", "limits"]


# Read routes are async: a WAL read never waits for a writer, and skipping the thread pool keeps
# them fast while download threads hold the GIL (bench/, measurement 3).
@router.get("", summary="Jobs, newest first", response_model=list[Job], responses=ERRORS)
async def list_jobs(jobs: JobsDep, status: Status | None = None, kind: Kind | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50,
              offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[dict]:
    return jobs.list(status=status, kind=kind, limit=limit, offset=offset)


@router.get("/{job_id}", summary="One job", response_model=Job, responses=ERRORS)
async def get_job(jobs: JobsDep, job_id: JobId) -> dict:
    return jobs.get(job_id)


@router.post("/{job_id}/pause", summary="Pause a download (bytes are kept)", response_model=Job,
             responses=ERRORS)
def pause_job(jobs: JobsDep, job_id: JobId) -> dict:
    return jobs.pause(job_id)


@router.post("/{job_id}/resume", summary="Resume a paused, cancelled or failed download", response_model=Job,
             responses=ERRORS)
def resume_job(jobs: JobsDep, job_id: JobId) -> dict:
    return jobs.resume(job_id)


@router.post("/{job_id}/cancel", summary="Cancel a job; discard=true also deletes its partial bytes",
             response_model=Job, responses=ERRORS)
def cancel_job(jobs: JobsDep, job_id: JobId, discard: Annotated[bool | None, Query()] = None,
               body: Annotated[dict | None, Body()] = None) -> dict:
    return jobs.cancel(job_id, discard=Fields(body).flag("discard", discard, False))


@router.get("/{job_id}/events", summary="Server-Sent Events: a job snapshot per change, ends when final",
            responses=ERRORS)
async def job_events(request: Request, jobs: JobsDep, job_id: JobId):
    first = jobs.get(job_id)  # 404 before the stream starts

    async def stream():
        last = None
        job = first
        while True:
            text = json.dumps(job)
            if text != last:
                last = text
                yield {"event": "job", "data": text}
            if job["status"] in FINAL or await request.is_disconnected():
                return
            await asyncio.sleep(0.25)
            job = await asyncio.to_thread(jobs.get, job_id)

    return EventSourceResponse(stream(), ping=15)
