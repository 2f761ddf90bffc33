"""Domain errors carry their HTTP status and a snake_case code; one handler shapes the body."""
from __future__ import annotations


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None, extra: dict | None = None):
        super().__init__(detail)
        self.extra = extra or {}
        self.detail = detail
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": self.code, "detail": self.detail, "status": self.status, **self.extra}


class InvalidInput(ApiError):
    status, code = 422, "invalid_input"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, detail: str = "A valid bearer token is required.", **kw):
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class QueueFull(ApiError):
    status, code = 429, "queue_full"


class InsufficientStorage(ApiError):
    status, code = 507, "insufficient_storage"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


class DownloadError(Exception):
    """A failed download; `code` lands in the job's error_code. `permanent` stops retries."""

    def __init__(self, detail: str, code: str = "download_failed", permanent: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.permanent = permanent
