"""GET /api/catalog: the curated models and variants (CATALOG_FILE); download one by catalog_id."""
from __future__ import annotations

from fastapi import APIRouter

from ..deps import InspectionDep
from .inspect import GpuGbQ
from .inspect_schemas import Catalog
from .schemas import ERRORS

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/catalog", summary="Catalog entries with size, fit verdict, downloaded and active flags",
            responses={200: {"model": Catalog, "description": "The catalog entries"}, **ERRORS})
def catalog(inspection: InspectionDep, gpu_memory_gb: GpuGbQ = None) -> dict:
    return {"entries": inspection.catalog.list(gpu_memory_gb)}
