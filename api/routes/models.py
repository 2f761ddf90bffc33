from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from ..deps import CallbackPolicyDep, ModelsDep
from ..validation import validate_repo_id
from ._params import CallbackQ, Fields, FlagQ, ModelIdQ
from .schemas import ERRORS, Job, ModelBody, ModelInfo

router = APIRouter(prefix="/api", tags=["models"])


@router.get("/models", summary="Every model in the cache", response_model=list[ModelInfo], responses=ERRORS)
def list_models(models: ModelsDep) -> list[dict]:
    return models.list()


@router.get("/models/status", summary="One model's cache status (status not_found when absent)",
            response_model=ModelInfo, responses=ERRORS)
def model_status(models: ModelsDep, model_id: ModelIdQ = None) -> dict:
    return models.status(validate_repo_id(model_id))


@router.post("/models/verify", summary="Hash every file of a cached model (202 with a verify job)",
             status_code=202, response_model=Job,
             responses={200: {"model": Job, "description": "The verify already running for this model"}, **ERRORS})
def verify_model(models: ModelsDep, policy: CallbackPolicyDep, model_id: ModelIdQ = None,
                 callback_url: CallbackQ = None,
                 body: Annotated[ModelBody | None, Body()] = None) -> JSONResponse:
    f = Fields(body)
    job, created = models.start_verify(f.model_id(model_id), f.callback_url(callback_url, policy))
    return JSONResponse(job, status_code=202 if created else 200)


@router.delete("/delete-model", summary="Delete a cached model (refuses the active one unless force=true)",
               responses=ERRORS)
def delete_model(request: Request, model_id: ModelIdQ = None, force: FlagQ = None,
                 body: Annotated[ModelBody | None, Body()] = None) -> JSONResponse:
    f = Fields(body)
    return JSONResponse(request.app.state.services.delete_model(f.model_id(model_id), f.flag("force", force, False)))


@router.get("/disk", summary="Cache size and free space", responses=ERRORS)
def disk(models: ModelsDep) -> dict:
    return models.disk()
