from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from ..deps import ModelsDep, SettingsDep
from ..validation import validate_repo_id
from ..webhooks import validate_callback_url
from ._params import CallbackQ, FlagQ, ModelIdQ, as_bool, as_str, pick
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
             status_code=202, response_model=Job, responses=ERRORS)
def verify_model(models: ModelsDep, settings: SettingsDep, model_id: ModelIdQ = None,
                 callback_url: CallbackQ = None,
                 body: Annotated[ModelBody | None, Body()] = None) -> dict:
    b = body.model_dump(exclude_none=True) if body else {}
    repo_id = validate_repo_id(as_str("model_id", pick("model_id", model_id, b)))
    cb = validate_callback_url(as_str("callback_url", pick("callback_url", callback_url, b)), settings)
    return models.start_verify(repo_id, cb)


@router.delete("/delete-model", summary="Delete a cached model (refuses the active one unless force=true)",
               responses=ERRORS)
def delete_model(request: Request, model_id: ModelIdQ = None, force: FlagQ = None,
                 body: Annotated[ModelBody | None, Body()] = None) -> JSONResponse:
    b = body.model_dump(exclude_none=True) if body else {}
    repo_id = validate_repo_id(as_str("model_id", pick("model_id", model_id, b)))
    forced = as_bool("force", pick("force", force, b), False)
    return JSONResponse(request.app.state.services.delete_model(repo_id, forced))


@router.get("/disk", summary="Cache size and free space", responses=ERRORS)
def disk(models: ModelsDep) -> dict:
    return models.disk()
