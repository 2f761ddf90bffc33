"""GET /api/catalog: the curated models and variants (CATALOG_FILE); download one by catalog_id."""
from __future__ import annotations

from fastapi import APIRouter

from ..deps import InspectionDep, JobsDep
from .inspect import GpuGbQ, off_the_read_threads
from .inspect_schemas import Catalog
from .schemas import ERRORS

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/catalog", summary="Catalog entries with size, fit verdict, downloaded and active flags",
            responses={200: {"model": Catalog, "description": "The catalog entries"}, **ERRORS})
async def catalog(inspection: InspectionDep, jobs: JobsDep, gpu_memory_gb: GpuGbQ = None) -> dict:
    return {"entries": await off_the_read_threads(jobs, inspection.catalog.list, gpu_memory_gb)}
