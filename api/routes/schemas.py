"""Response and body models: they feed the OpenAPI document that N8n users and schemathesis read."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..download.bandwidth import RATE_PATTERN
from ..validation import PATTERNS_PATTERN, REPO_ID_PATTERN, REVISION_PATTERN, VARIANT_PATTERN
from ._params import CALLBACK_PATTERN

ModelIdField = Annotated[str | None, Field(pattern=REPO_ID_PATTERN, max_length=200)]
VariantField = Annotated[str | None, Field(pattern=VARIANT_PATTERN, max_length=64)]
CallbackField = Annotated[str | None, Field(pattern=CALLBACK_PATTERN, max_length=2000)]
_Glob = Annotated[str, Field(pattern=PATTERNS_PATTERN, min_length=1, max_length=200)]


def _number_only(v):
    """A rate given as a string goes to the pattern-checked string branch, never lax int parsing."""
    if isinstance(v, (str, bool)):
        raise ValueError("not a number")
    return v


Rate = (Annotated[int, Field(ge=0), BeforeValidator(_number_only)]
        | Annotated[str, Field(pattern=RATE_PATTERN, max_length=40)] | None)
Patterns = Annotated[str, Field(pattern=PATTERNS_PATTERN, max_length=2000)] | list[_Glob] | None


class ErrorBody(BaseModel):
    error: str
    detail: str
    status: int


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc} for code, desc in {
        401: "Missing or wrong bearer token", 403: "The Hub refused access (gated repo, token)",
        404: "Not found", 409: "Conflict with the current state",
        413: "The request body is larger than MAX_BODY_BYTES", 422: "Invalid input",
        429: "Rate limited or queue full (see Retry-After)", 502: "The Hub or Docker answered with an error",
        503: "A dependency (Docker, the Hub) is unavailable", 507: "Not enough disk space"}.items()}


class Job(BaseModel):
    model_config = ConfigDict(extra="allow")
    job_id: str
    kind: str
    model_id: str | None
    revision: str | None
    status: str
    progress: int
    bytes_downloaded: int
    bytes_total: int
    speed_bps: float
    eta_seconds: float | None
    files_done: int
    files_total: int
    error: str | None
    error_code: str | None
    attempts: int
    waiting_until: str | None = None     # while a Hub rate limit is waited out (ISO 8601 UTC)
    waiting_reason: str | None = None
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    status_url: str
    callback_url: str | None
    result: dict | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


CATALOG_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class DownloadBody(_Body):
    model_id: ModelIdField = None
    auto: bool | None = None
    revision: Annotated[str | None, Field(pattern=REVISION_PATTERN, max_length=200)] = None
    include: Patterns = None
    exclude: Patterns = None
    callback_url: CallbackField = None
    activate: bool | None = None
    max_bps: Rate = None
    dry_run: bool | None = None
    catalog_id: Annotated[str | None, Field(pattern=CATALOG_ID_PATTERN)] = None


class LimitsBody(_Body):
    bandwidth_bps: Rate = None
    max_concurrent_downloads: Annotated[int | None, Field(ge=1, le=16)] = None


class Limits(BaseModel):
    bandwidth_bps: int
    bandwidth: str
    max_concurrent_downloads: int
    source: str
    updated_at: str | None


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    model_id: str
    status: str


class Container(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    status: str
    health: str
    image: str | None
    started_at: str | None
    restart_count: int


class ModelBody(_Body):
    model_id: ModelIdField = None
    force: bool | None = None
    restart: bool | None = None
    callback_url: CallbackField = None


class SwitchBody(ModelBody):
    variant: VariantField = None


class ManualInstructions(BaseModel):
    status: str
    model_id: str
    revision: str
    message: str
    instructions: list[str]
    cache_dir: str
