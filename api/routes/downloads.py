from __future__ import annotations

import shlex
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from ..deps import CallbackPolicyDep, InspectionDep, JobsDep, SettingsDep
from ..validation import REPO_ID_PATTERN, validate_patterns, validate_repo_id, validate_revision
from ._params import CallbackQ, Fields, ModelIdQ, PatternsQ, RateQ, RevisionQ
from .inspect_schemas import DryRun
from .schemas import CATALOG_ID_PATTERN, ERRORS, DownloadBody, Job, ManualInstructions

router = APIRouter(prefix="/api", tags=["downloads"])


@router.post("/download-model", summary="Queue a model download (202 with the job)",
             status_code=202, response_model=Job,
             responses={200: {"model": Job | ManualInstructions | DryRun,
                              "description": "The running job for this model, manual instructions, or a dry "
                                             "run's plan"},
                        **ERRORS})
async def download_model(
    jobs: JobsDep, settings: SettingsDep, policy: CallbackPolicyDep, inspection: InspectionDep,
    model_id: ModelIdQ = None,
    auto: Annotated[bool | None, Query(description="false: answer with manual instructions")] = None,
    revision: RevisionQ = None,
    include: PatternsQ = None,
    exclude: PatternsQ = None,
    callback_url: CallbackQ = None,
    activate: Annotated[bool | None, Query(description="switch to it when complete")] = None,
    max_bps: RateQ = None,
    dry_run: Annotated[bool | None, Query(description="true: answer 200 with the plan, queue nothing")] = None,
    catalog_id: Annotated[str | None, Query(pattern=CATALOG_ID_PATTERN, description="a GET /api/catalog id")] = None,
    body: Annotated[DownloadBody | None, Body()] = None,
) -> Any:
    # The whole submit runs in the job manager's own request threads (it may wait on the Hub up
    # to HUB_SUBMIT_TIMEOUT): the threads the read routes run on are never taken by it.
    return await jobs.hub.run(_download_model, jobs, settings, policy, inspection, model_id, auto, revision,
                              include, exclude, callback_url, activate, max_bps, dry_run, catalog_id, body)


def _download_model(jobs, settings, policy, inspection, model_id, auto, revision, include, exclude, callback_url,
                    activate, max_bps, dry_run, catalog_id, body, deadline: float) -> JSONResponse:
    f = Fields(body)
    entry_id = f.text("catalog_id", catalog_id)
    if entry_id is not None:
        entry = inspection.catalog.resolve(entry_id, f.text("model_id", model_id))
        repo_id = entry.model_id
        rev = validate_revision(f.text("revision", revision) or entry.revision)
        inc = validate_patterns(f.get("include", include, list(entry.include) if entry.include else None), "include")
    else:
        repo_id = f.model_id(model_id)
        rev = validate_revision(f.text("revision", revision))
        inc = validate_patterns(f.get("include", include), "include")
    exc = validate_patterns(f.get("exclude", exclude), "exclude")
    cb = f.callback_url(callback_url, policy)
    do_activate = f.flag("activate", activate, False)
    job_bps = f.rate("max_bps", max_bps)
    if f.flag("dry_run", dry_run, False):
        return JSONResponse(inspection.inspector.dry_run(repo_id, rev, inc, exc), status_code=200)
    if not f.flag("auto", auto, True):
        return JSONResponse({"status": "manual", "model_id": repo_id, "revision": rev,
                             "message": "Automatic download not requested; run this on the host.",
                             "instructions": [f"pip install 'huggingface_hub=={_hf_version()}'",
                                              manual_command(repo_id, rev, inc, exc, settings.hf_cache)],
                             "cache_dir": str(settings.hf_cache)}, status_code=200)
    job, created = jobs.submit_download(repo_id, rev, inc, exc, callback_url=cb, activate=do_activate,
                                       max_bps=job_bps, deadline=deadline)
    return JSONResponse(job, status_code=202 if created else 200)


def manual_command(repo_id: str, revision: str, include: list[str] | None, exclude: list[str] | None,
                   cache_dir) -> str:
    """The `hf download` line for auto=false: every argument shell-quoted, the filters kept."""
    args = ["hf", "download", repo_id, "--revision", revision, "--cache-dir", str(cache_dir)]
    args += [a for p in include or [] for a in ("--include", p)]
    args += [a for p in exclude or [] for a in ("--exclude", p)]
    return shlex.join(args)


def _hf_version() -> str:
    import huggingface_hub
    return huggingface_hub.__version__


@router.get("/download-progress", summary="The newest matching download job, or status idle",
            responses=ERRORS)
async def download_progress(
    jobs: JobsDep,
    job_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{16}$")] = None,
    model_id: Annotated[str | None, Query(pattern=REPO_ID_PATTERN, max_length=200)] = None,
) -> dict:
    if job_id:
        job = jobs.get(job_id)
    else:
        if model_id is not None:
            validate_repo_id(model_id)
        job = jobs.newest("download", model_id)
        if job is None:
            return {"status": "idle"}
    return {**job, "model": job["model_id"]}
