"""When is a (re)started inference container ready? Its state, its HEALTHCHECK, and the HTTP
probes the switch asks for (`INFERENCE_HEALTH_URL`, `INFERENCE_MODELS_URL` listing the model,
sent with `INFERENCE_API_KEY` when vLLM runs with `--api-key`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import docker
import docker.errors
import httpx

from .docker_errors import docker_errors, health_of, is_connection_error

POLL_INTERVAL = 0.5            # seconds between readiness probes
HTTP_PROBE_TIMEOUT = 3.0       # seconds for one health/models HTTP probe


class NotReady(Exception):
    """The container failed its readiness wait (exited, crashed, or the deadline passed)."""


@dataclass(frozen=True)
class ReadyCheck:
    require_health: bool = False
    health_url: str | None = None
    models_url: str | None = None
    expect_model: str | None = None
    headers: dict[str, str] = field(default_factory=dict)   # e.g. the probe's Authorization


def wait_ready(api: docker.APIClient, container_id: str, deadline: float, check: ReadyCheck, *,
               started: float, fail_on_restart: bool = True) -> float:
    """Poll until ready; return seconds since ``started``. Raises NotReady."""
    last = "not checked yet"
    with httpx.Client(timeout=HTTP_PROBE_TIMEOUT, trust_env=False, headers=check.headers) as http:
        while True:
            try:
                info = api.inspect_container(container_id)
            except docker.errors.NotFound as exc:
                raise NotReady("the new container disappeared") from exc
            except docker_errors() as exc:
                if not is_connection_error(exc):
                    raise NotReady(f"inspect failed: {exc}") from exc
                last = f"docker not answering: {exc}"
                info = None
            if info is not None:
                state = info.get("State") or {}
                status = state.get("Status")
                if status in ("exited", "dead"):
                    raise NotReady(f"the container exited (status {status}, "
                                   f"exit code {state.get('ExitCode')}"
                                   f"{', OOM killed' if state.get('OOMKilled') else ''})")
                if fail_on_restart and (state.get("Restarting") or int(info.get("RestartCount") or 0) > 0):
                    raise NotReady(f"the container crashed and is being restarted "
                                   f"(exit code {state.get('ExitCode')})")
                ready, last = probe(info, http, check)
                if ready:
                    return round(time.monotonic() - started, 3)
            now = time.monotonic()
            if now >= deadline:
                raise NotReady(f"not ready within the timeout ({last})")
            time.sleep(min(POLL_INTERVAL, max(0.0, deadline - now)))


def probe(info: dict, http: httpx.Client, check: ReadyCheck) -> tuple[bool, str]:
    state = info.get("State") or {}
    if not state.get("Running"):
        return False, f"container status {state.get('Status')}"
    if check.require_health:
        health = health_of(state)
        if health != "healthy":
            return False, f"container health is {health}"
    if check.health_url:
        try:
            resp = http.get(check.health_url)
        except httpx.HTTPError as exc:
            return False, f"{check.health_url}: {type(exc).__name__}"
        if resp.status_code != 200:
            return False, f"{check.health_url}: HTTP {resp.status_code}"
    if check.models_url and check.expect_model:
        try:
            resp = http.get(check.models_url)
            if resp.status_code in (401, 403):
                return False, f"{check.models_url}: HTTP {resp.status_code} (is INFERENCE_API_KEY vLLM's --api-key?)"
            ids = [m.get("id") for m in (resp.json().get("data") or []) if isinstance(m, dict)]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            return False, f"{check.models_url}: {type(exc).__name__}"
        if check.expect_model not in ids:
            return False, f"{check.models_url} lists {ids}, not {check.expect_model!r}"
    return True, "ready"
