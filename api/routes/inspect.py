"""Know before you download: GET /api/inspect, GET /api/fit, GET /api/models/updates.

They wait on the Hub, so they run in the job manager's Hub request threads (api/jobs/hubgate.py),
never in the threads the read routes run on."""
from __future__ import annotations

from typing import Annotated, Any, Callable

from fastapi import APIRouter, Query

from ..deps import InspectionDep, JobsDep, ModelsDep
from ..jobs.manager import JobManager
from ..validation import validate_repo_id, validate_revision
from ._params import ModelIdQ, RevisionQ
from .inspect_schemas import FitAnswer, Inspection, Updates
from .schemas import ERRORS

router = APIRouter(prefix="/api", tags=["inspect"])
MaxLenQ = Annotated[int | None, Query(ge=1, le=10_000_000, description="context length to plan for; "
                                      "default the model's own")]
GpuGbQ = Annotated[float | None, Query(gt=0, le=100_000, description="GPU memory in GiB; overrides detection")]
VariantQ = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._/-]{1,200}$",
                                       description="a GGUF variant name from /api/inspect (Q4_K_M, ...)")]


async def off_the_read_threads(jobs: JobManager, fn: Callable[..., Any], *args, **kw) -> Any:
    return await jobs.hub.run(lambda deadline: fn(*args, **kw))


@router.get("/inspect", summary="What a repo holds: files by kind, parameters, GGUF variants, fit",
            responses={200: {"model": Inspection, "description": "The inspection"}, **ERRORS})
async def inspect_repo(inspection: InspectionDep, jobs: JobsDep, model_id: ModelIdQ = None,
                       revision: RevisionQ = None, max_model_len: MaxLenQ = None,
                       gpu_memory_gb: GpuGbQ = None) -> dict:
    return await off_the_read_threads(jobs, inspection.inspector.inspect, validate_repo_id(model_id),
                                      validate_revision(revision), max_model_len=max_model_len,
                                      gpu_memory_gb=gpu_memory_gb)


@router.get("/fit", summary="Does the model (or one GGUF variant) fit the GPU and the disk?",
            responses={200: {"model": FitAnswer, "description": "The verdicts"}, **ERRORS})
async def fit(inspection: InspectionDep, jobs: JobsDep, model_id: ModelIdQ = None, revision: RevisionQ = None,
              variant: VariantQ = None, max_model_len: MaxLenQ = None, gpu_memory_gb: GpuGbQ = None) -> dict:
    return await off_the_read_threads(jobs, inspection.inspector.fit, validate_repo_id(model_id),
                                      validate_revision(revision), variant=variant, max_model_len=max_model_len,
                                      gpu_memory_gb=gpu_memory_gb)


@router.get("/models/updates", summary="For each cached model on a branch: has the branch moved on the Hub?",
            responses={200: {"model": Updates, "description": "One row per cached model"}, **ERRORS})
async def updates(inspection: InspectionDep, jobs: JobsDep, models: ModelsDep) -> dict:
    rows = await off_the_read_threads(jobs, lambda: inspection.updates.check_all(models.list()))
    return {"models": rows, "updates_available": sum(r["status"] == "update_available" for r in rows)}
