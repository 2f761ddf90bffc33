"""Response models of the inspection routes, for the OpenAPI document (docs/api.md has the prose)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Verdict = Literal["fits", "fits_with_max_model_len", "does_not_fit", "unknown"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")   # fields may be added; clients ignore what they do not know


class Gpu(_Open):
    total_bytes: int | None
    source: Literal["setting", "request", "nvml", "docker", "unknown"]
    count: int
    detail: str | None


class FitVerdict(_Open):
    verdict: Verdict
    reason: str
    gpu: Gpu
    gpu_memory_utilization: float
    usable_bytes: int | None
    weights_bytes: int
    overhead_bytes: int
    kv_bytes_per_token: int | None
    max_model_len: int | None
    kv_cache_bytes: int | None
    required_bytes: int | None
    max_model_len_that_fits: int | None
    serve_profile: dict


class SelectionFit(FitVerdict):
    variant: str | None


class DiskVerdict(_Open):
    verdict: Literal["fits", "does_not_fit"]
    bytes_to_fetch: int
    free_bytes: int
    reserve_bytes: int
    promised_bytes: int
    available_bytes: int


class VariantFit(_Open):
    name: str
    size: int
    include: str
    verdict: Verdict
    max_model_len_that_fits: int | None


class FitAnswer(_Open):
    model_id: str
    revision: str
    commit: str
    variant: str | None
    include: str | None = None
    fit: FitVerdict
    disk: DiskVerdict
    variants: list[VariantFit] | None = None
    smallest_variant_that_fits: str | None = None
    largest_variant_that_fits: str | None = None


class InspectFile(_Open):
    path: str
    kind: Literal["weights", "config", "tokenizer", "chat_template", "docs", "code", "other"]
    format: str | None
    precision: str | None
    size: int
    sha256: str | None
    sha1: str | None
    lfs: bool
    cached: bool


class Inspection(_Open):
    model_id: str
    revision: str
    commit: str
    source: Literal["hub", "cache"]
    stale: bool
    repo: dict
    files: list[InspectFile]
    totals: dict
    config: dict | None
    architecture: dict | None
    safetensors: dict | None
    variants: list[dict]
    fit: dict


class DryRun(_Open):
    status: Literal["dry_run"]
    model_id: str
    revision: str
    commit: str
    files: list[dict]
    bytes_total: int
    bytes_to_fetch: int
    files_reused: int
    disk: DiskVerdict
    fit: SelectionFit | None


class CatalogRow(_Open):
    id: str
    model_id: str
    revision: str
    include: list[str] | None
    description: str
    recommended: bool
    commit: str | None
    size_bytes: int | None
    downloaded: bool
    active: bool
    fit: SelectionFit | None


class Catalog(_Open):
    entries: list[CatalogRow]


class UpdateRow(_Open):
    model_id: str
    revision: str
    commit: str | None
    hub_commit: str | None
    status: Literal["up_to_date", "update_available", "pinned", "unknown"]
    changed: list[str]
    added: list[str]
    removed: list[str]
    bytes_to_fetch: int


class Updates(_Open):
    models: list[UpdateRow]
    updates_available: int
