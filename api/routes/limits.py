from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from ..deps import LimitsDep
from ._params import Fields, RateQ
from .schemas import ERRORS, Limits, LimitsBody

router = APIRouter(prefix="/api", tags=["limits"])


@router.get("/limits", summary="The bandwidth limit and download concurrency in force", response_model=Limits,
            responses=ERRORS)
async def get_limits(limits: LimitsDep) -> dict:
    return limits.get()


@router.put("/limits", summary="Change the limits at run time (applied within a second, kept across restarts)",
            response_model=Limits, responses=ERRORS)
def put_limits(limits: LimitsDep, bandwidth_bps: RateQ = None,
               max_concurrent_downloads: Annotated[int | None, Query(ge=1, le=16)] = None,
               body: Annotated[LimitsBody | None, Body()] = None) -> dict:
    f = Fields(body)
    return limits.put(f.rate("bandwidth_bps", bandwidth_bps),
                      f.get("max_concurrent_downloads", max_concurrent_downloads))
