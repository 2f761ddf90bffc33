"""Dependencies as Annotated aliases: routes declare what they need, the app state provides it."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .jobs.manager import JobManager
from .settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _jobs(request: Request) -> JobManager:
    return request.app.state.jobs


def _services(request: Request):
    return request.app.state.services


SettingsDep = Annotated[Settings, Depends(_settings)]
JobsDep = Annotated[JobManager, Depends(_jobs)]
ServicesDep = Annotated[object, Depends(_services)]


async def params(request: Request) -> dict:
    """Query parameters merged with a flat JSON body (N8n sends either); the query wins."""
    merged: dict = {}
    if request.method in ("POST", "PUT", "PATCH") and request.headers.get("content-type", "").startswith(
            "application/json"):
        try:
            body = await request.json()
        except ValueError:
            from .errors import InvalidInput
            raise InvalidInput("The request body is not valid JSON.", code="invalid_json")
        if isinstance(body, dict):
            merged.update(body)
        elif body is not None:
            from .errors import InvalidInput
            raise InvalidInput("The JSON body must be a flat object.", code="invalid_json")
    merged.update(request.query_params)
    return merged


ParamsDep = Annotated[dict, Depends(params)]
