from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from ..deps import CallbackPolicyDep, ContainersDep, ModelsDep, SettingsDep, SwitchDep
from ..envfile import ARGS_KEY, VARIANT_KEY
from ..errors import ApiError
from ._params import CallbackQ, Fields, ModelIdQ, VariantQ
from .schemas import ERRORS, Job, SwitchBody

router = APIRouter(prefix="/api", tags=["active model"])


@router.get("/active-model", summary="The active model: DEFAULT_MODEL as the .env file says now",
            responses=ERRORS)
def get_active(settings: SettingsDep, models: ModelsDep, containers: ContainersDep, switch: SwitchDep) -> dict:
    container = None
    try:
        container = containers.get(settings.inference_container)
    except ApiError:
        container = None  # no engine, or the container does not exist yet
    return {"model_id": models.active_model(), "env_file": str(settings.env_file), "container": container,
            # what clients call it by, and the flags .env gives vLLM with it
            "served_model_alias": settings.served_model_alias,
            "inference_args": switch.active_env(ARGS_KEY),
            # the GGUF variant vLLM serves as model_id:variant; null: the repo itself
            "variant": switch.active_env(VARIANT_KEY) or None}


@router.put("/active-model", summary="Switch the active model (202 with a switch job)", status_code=202,
            response_model=Job, responses=ERRORS)
def put_active(switch: SwitchDep, policy: CallbackPolicyDep,
               model_id: ModelIdQ = None, variant: VariantQ = None,
               restart: Annotated[bool | None, Query(description="false: rewrite .env only")] = None,
               callback_url: CallbackQ = None,
               body: Annotated[SwitchBody | None, Body()] = None) -> dict:
    f = Fields(body)
    return switch.request(f.model_id(model_id), f.flag("restart", restart, True),
                          f.callback_url(callback_url, policy), variant=f.variant(variant))
