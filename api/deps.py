"""Dependencies as Annotated aliases: routes declare what they need, the app state provides it.

They are `async def` on purpose: FastAPI runs a sync dependency on its thread pool, and every hop
costs a GIL hand-over that download threads make slow (see bench/, measurement 3)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .containers import ContainerManager
from .fleet.service import FleetService
from .jobs.manager import JobManager
from .models_cache import ModelCache
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


async def _fleet(request: Request) -> FleetService:
    return request.app.state.fleet


SettingsDep = Annotated[Settings, Depends(_settings)]
JobsDep = Annotated[JobManager, Depends(_jobs)]
ModelsDep = Annotated[ModelCache, Depends(_models)]
ContainersDep = Annotated[ContainerManager, Depends(_containers)]
SwitchDep = Annotated[SwitchService, Depends(_switch)]
FleetDep = Annotated[FleetService, Depends(_fleet)]
