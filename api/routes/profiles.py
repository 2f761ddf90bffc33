"""Serve profiles: the vLLM flags a switch applies for each model (api/profiles.py)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from ..deps import ProfilesDep, SettingsDep
from ..profiles import ARGS_SCHEMA, Profile
from ._params import Fields, ModelIdQ, VariantQ
from .schemas import ERRORS

router = APIRouter(prefix="/api", tags=["models"])


class ProfileBody(BaseModel):
    # model_id is a query parameter only here: the body is the profile itself.
    model_config = ConfigDict(extra="ignore")
    args: dict[str, Any] | None = Field(None, description="vLLM flag (without `--`) -> value; {} removes the profile",
                                        examples=[{"tensor-parallel-size": 2, "max-model-len": 32768}],
                                        json_schema_extra=ARGS_SCHEMA)


class ProfileInfo(BaseModel):
    model_id: str
    variant: str | None = Field(None, description="the GGUF variant asked for")
    profile_key: str | None = Field(None, description="the profiles file's key the args come from: "
                                    "`model_id:variant`, `model_id` (a variant without its own), or null")
    args: dict[str, Any]
    command_line: str
    served_model_names: list[str]


def _shape(profile: Profile, alias: str) -> dict:
    return {**profile.body(), "served_model_names": [alias, profile.model_id]}


@router.get("/models/profile", summary="A model's serve profile (empty args when it has none)",
            response_model=ProfileInfo, responses=ERRORS)
def get_profile(profiles: ProfilesDep, settings: SettingsDep, model_id: ModelIdQ = None,
                variant: VariantQ = None) -> dict:
    f = Fields(None)
    model_id, variant = f.model_id(model_id), f.variant(variant)
    return _shape(profiles.get(model_id, variant) or Profile(model_id, {}, variant), settings.served_model_alias)


@router.put("/models/profile", summary="Set a model's serve profile (allow-listed vLLM flags only)",
            response_model=ProfileInfo, responses=ERRORS)
def put_profile(profiles: ProfilesDep, settings: SettingsDep, model_id: ModelIdQ = None, variant: VariantQ = None,
                body: Annotated[ProfileBody | None, Body()] = None) -> dict:
    args = body.args if body is not None and body.args is not None else {}
    f = Fields(None)
    return _shape(profiles.put(f.model_id(model_id), args, f.variant(variant)), settings.served_model_alias)
