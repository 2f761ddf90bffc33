"""Dependencies as Annotated aliases: routes declare what they need, the app state provides it.

They are `async def` on purpose: FastAPI runs a sync dependency on its thread pool, and every hop
costs a GIL hand-over that download threads make slow (see bench/, measurement 3)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .callback_policy import CallbackPolicy
from .containers import ContainerManager
from .fleet.service import FleetService
from .inspect.wiring import Inspection
from .jobs.manager import JobManager
from .limits import LimitsService
from .models_cache import ModelCache
from .profiles import ProfileStore
from .settings import Settings
from .switch import SwitchService


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _jobs(request: Request) -> JobManager:
    return request.app.state.jobs


async def _models(request: Request) -> ModelCache:
    return request.app.state.services.models


async def _containers(request: Request) -> ContainerManager:
    return request.app.state.services.containers


async def _switch(request: Request) -> SwitchService:
    return request.app.state.services.switch


async def _limits(request: Request) -> LimitsService:
    return request.app.state.limits


async def _profiles(request: Request) -> ProfileStore:
    return request.app.state.services.profiles


async def _callback_policy(request: Request) -> CallbackPolicy:
    return request.app.state.services.webhooks.policy


async def _fleet(request: Request) -> FleetService:
    return request.app.state.fleet


SettingsDep = Annotated[Settings, Depends(_settings)]
JobsDep = Annotated[JobManager, Depends(_jobs)]
ModelsDep = Annotated[ModelCache, Depends(_models)]
ContainersDep = Annotated[ContainerManager, Depends(_containers)]
SwitchDep = Annotated[SwitchService, Depends(_switch)]
LimitsDep = Annotated[LimitsService, Depends(_limits)]
ProfilesDep = Annotated[ProfileStore, Depends(_profiles)]
CallbackPolicyDep = Annotated[CallbackPolicy, Depends(_callback_policy)]
FleetDep = Annotated[FleetService, Depends(_fleet)]


async def _inspection(request: Request) -> Inspection:
    return request.app.state.inspection


InspectionDep = Annotated[Inspection, Depends(_inspection)]
