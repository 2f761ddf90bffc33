"""Docker engine errors as API errors, and the bits of an inspect both the adapter and the
recreate read (health, healthcheck). Shared by api/containers.py and api/recreate.py."""
from __future__ import annotations

import docker.errors
import requests.exceptions

from .errors import ApiError, Conflict, NotFound, ServiceUnavailable


class SwitchFailed(ApiError):
    """The recreated container never became healthy; the previous one was put back.

    ``logs`` holds the last lines of the failed container; ``rolled_back`` tells whether the
    previous container is back under its name (and running, if it was running before).
    """

    status, code = 502, "switch_failed"

    def __init__(self, detail: str, *, logs: list[str] | None = None, rolled_back: bool = True,
                 code: str | None = None, status: int | None = None):
        super().__init__(detail, code=code, status=status)
        self.logs = list(logs or [])
        self.rolled_back = rolled_back

    def body(self) -> dict:
        body = super().body()
        body["logs"] = self.logs
        body["rolled_back"] = self.rolled_back
        return body


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return True
    if isinstance(exc, docker.errors.DockerException) and not isinstance(exc, docker.errors.APIError):
        # e.g. "Error while fetching server API version" when the socket is missing
        return True
    return False


def unavailable(exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"Docker engine is not reachable: {exc}", code="docker_unavailable")


def translate(exc: BaseException, name: str | None = None) -> ApiError:
    """Map a docker/requests exception to an ApiError."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, docker.errors.NotFound):
        return NotFound(f"Container {name!r} does not exist.", code="container_not_found")
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 500
        explanation = exc.explanation or str(exc)
        if status == 409:
            return Conflict(f"Docker refused: {explanation}", code="container_conflict")
        return ApiError(f"Docker error: {explanation}", code="docker_error", status=502)
    if is_connection_error(exc):
        return unavailable(exc)
    return ApiError(f"Docker error: {exc}", code="docker_error", status=502)


def docker_errors() -> tuple[type[BaseException], ...]:
    return (docker.errors.DockerException, requests.exceptions.RequestException)


def health_of(state: dict) -> str:
    health = state.get("Health") or {}
    status = health.get("Status")
    return status if status in ("healthy", "unhealthy", "starting") else "none"


def has_healthcheck(config: dict) -> bool:
    hc = config.get("Healthcheck") or {}
    test = hc.get("Test") or []
    return bool(test) and test[0] != "NONE"
