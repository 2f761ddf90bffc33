"""Docker adapter: list/inspect/restart/start/stop/logs of *managed* containers, and a
Watchtower-style "recreate with a changed environment" with health gating and rollback
(api/recreate.py, readiness in api/readiness.py).

Only the names in ``settings.managed_container_names`` are visible; every other name is
answered with ``NotFound(code="container_not_found")`` without asking Docker about it.

Error mapping (all are ``ApiError`` subclasses from ``api.errors``):

* engine unreachable / timed out         -> ``ServiceUnavailable`` code ``docker_unavailable`` (503)
* container missing (or not allow-listed) -> ``NotFound`` code ``container_not_found`` (404)
* Docker refused (409 from the engine)    -> ``Conflict`` code ``container_conflict`` (409)
* any other engine error                  -> ``ApiError`` code ``docker_error`` (502)
* recreate failed and was rolled back     -> ``SwitchFailed`` code ``switch_failed`` (502), ``.logs``

See docs/containers.md for the recreate/rollback sequence.
"""
from __future__ import annotations

import logging
import threading

import docker

from .docker_errors import (SwitchFailed, docker_errors as _docker_errors, health_of as _health_of,
                            translate as _translate, unavailable as _unavailable)
from .errors import Conflict, NotFound
from .readiness import ReadyCheck
from .recreate import Recreate, StepCallback, merge_env
from .settings import Settings

__all__ = ["ContainerManager", "SwitchFailed", "merge_env"]
log = logging.getLogger(__name__)

DOCKER_TIMEOUT = 10.0          # seconds for one plain API call (ping, inspect, rename, ...)
DEFAULT_STOP_TIMEOUT = 10      # docker's own default grace period before SIGKILL


def _summary(info: dict) -> dict:
    state = info.get("State") or {}
    config = info.get("Config") or {}
    return {
        "name": (info.get("Name") or "").lstrip("/"),
        "id": (info.get("Id") or "")[:12],
        "status": state.get("Status") or "unknown",
        "health": _health_of(state),
        "image": config.get("Image") or info.get("Image") or "",
        "started_at": state.get("StartedAt"),
        "restart_count": int(info.get("RestartCount") or 0),
    }


class ContainerManager:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._switch_lock = threading.Lock()

    # ------------------------------------------------------------------ client
    @property
    def managed_names(self) -> list[str]:
        return list(self.settings.managed_container_names)

    def _get_client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                try:
                    if self.settings.docker_host:
                        client = docker.DockerClient(base_url=self.settings.docker_host,
                                                     timeout=DOCKER_TIMEOUT)
                    else:
                        client = docker.from_env(timeout=DOCKER_TIMEOUT)
                except _docker_errors() as exc:  # not cached: the next call retries
                    raise _unavailable(exc) from exc
                self._client = client
            return self._client

    @property
    def api(self) -> docker.APIClient:
        return self._get_client().api

    def available(self) -> bool:
        """True when the engine answers a ping. Never raises."""
        try:
            return bool(self._get_client().ping())
        except Exception:  # noqa: BLE001 - by contract
            return False

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # noqa: BLE001
                    pass
                self._client = None

    # ------------------------------------------------------------- allow-list
    def _check_allowed(self, name: str) -> None:
        if name not in self.managed_names:
            raise NotFound(f"Container {name!r} does not exist or is not managed.",
                           code="container_not_found")

    def _inspect(self, name: str) -> dict:
        """Inspect an allow-listed container by exact name."""
        self._check_allowed(name)
        try:
            info = self.api.inspect_container(name)
        except _docker_errors() as exc:
            raise _translate(exc, name) from exc
        # Docker also resolves ID prefixes; only an exact name match counts.
        if (info.get("Name") or "").lstrip("/") != name:
            raise NotFound(f"Container {name!r} does not exist.", code="container_not_found")
        return info

    @staticmethod
    def _stop_timeout(info: dict) -> int:
        value = (info.get("Config") or {}).get("StopTimeout")
        return int(value) if isinstance(value, int) and value >= 0 else DEFAULT_STOP_TIMEOUT

    # ---------------------------------------------------------------- queries
    def list(self) -> list[dict]:
        out = []
        for name in self.managed_names:
            try:
                out.append(_summary(self._inspect(name)))
            except NotFound:
                continue
        return out

    def get(self, name: str) -> dict:
        return _summary(self._inspect(name))

    def logs(self, name: str, tail: int = 200) -> list[str]:
        info = self._inspect(name)
        return self._logs_by_id(info["Id"], tail, name=name)

    def _logs_by_id(self, container_id: str, tail: int, *, name: str | None = None) -> list[str]:
        tail = max(0, int(tail))
        try:
            raw = self.api.logs(container_id, stdout=True, stderr=True, stream=False,
                                timestamps=False, tail=tail)
        except _docker_errors() as exc:
            raise _translate(exc, name or container_id) from exc
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        return raw.splitlines()

    # ---------------------------------------------------------------- actions
    def restart(self, name: str) -> dict:
        info = self._inspect(name)
        try:
            self.api.restart(info["Id"], timeout=self._stop_timeout(info))
        except _docker_errors() as exc:
            raise _translate(exc, name) from exc
        return self.get(name)

    def start(self, name: str) -> dict:
        info = self._inspect(name)
        if not (info.get("State") or {}).get("Running"):
            try:
                self.api.start(info["Id"])
            except _docker_errors() as exc:
                raise _translate(exc, name) from exc
        return self.get(name)

    def stop(self, name: str) -> dict:
        info = self._inspect(name)
        state = info.get("State") or {}
        if state.get("Running") or state.get("Restarting"):
            try:
                self.api.stop(info["Id"], timeout=self._stop_timeout(info))
            except _docker_errors() as exc:
                raise _translate(exc, name) from exc
        return self.get(name)

    # ---------------------------------------------------------------- recreate
    def recreate_with_env(self, name: str, env_changes: dict[str, str], *, timeout: float,
                          health_url: str | None = None, models_url: str | None = None,
                          expect_model: str | None = None, on_step: StepCallback | None = None,
                          probe_headers: dict[str, str] | None = None) -> dict:
        """Replace container ``name`` by a copy whose env has ``env_changes`` applied.

        Sequence: inspect -> stop old -> rename old to ``<name>-backup-<id12>`` -> create new
        (same image/config/HostConfig/networks, new Env) -> start -> wait until ready ->
        remove backup. On any failure after the old container was touched, the new container
        (if any) is removed, the backup is renamed back and restarted (if it was running),
        and ``SwitchFailed`` is raised with the failed container's last log lines.
        ``probe_headers`` go with the HTTP probes (vLLM's ``--api-key`` as a bearer token).
        """
        self._check_allowed(name)
        if not self._switch_lock.acquire(blocking=False):
            raise Conflict("A recreate of a managed container is already running.",
                           code="switch_in_progress")
        try:
            old = self._inspect(name)
            check = ReadyCheck(health_url=health_url, models_url=models_url, expect_model=expect_model,
                               headers=dict(probe_headers or {}))
            return Recreate(self.api, old, dict(env_changes), timeout=timeout, check=check,
                            stop_timeout=self._stop_timeout(old), logs=self._logs_by_id,
                            on_step=on_step).run()
        finally:
            self._switch_lock.release()
