"""Docker adapter: list/inspect/restart/start/stop/logs of *managed* containers, and a
Watchtower-style "recreate with a changed environment" with health gating and rollback.

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
import time
from typing import Any, Callable

import docker
import docker.errors
import httpx
import requests.exceptions

from api.errors import ApiError, Conflict, NotFound, ServiceUnavailable
from api.settings import Settings

log = logging.getLogger(__name__)

DOCKER_TIMEOUT = 10.0          # seconds for one plain API call (ping, inspect, rename, ...)
DEFAULT_STOP_TIMEOUT = 10      # docker's own default grace period before SIGKILL
POLL_INTERVAL = 0.5            # seconds between readiness probes
HTTP_PROBE_TIMEOUT = 3.0       # seconds for one health/models HTTP probe
FAILED_LOG_LINES = 50

StepCallback = Callable[[str, dict], None]


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


class _Failure(Exception):
    """Internal: the new container failed its readiness wait."""


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return True
    if isinstance(exc, docker.errors.DockerException) and not isinstance(exc, docker.errors.APIError):
        # e.g. "Error while fetching server API version" when the socket is missing
        return True
    return False


def _unavailable(exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"Docker engine is not reachable: {exc}", code="docker_unavailable")


def _translate(exc: BaseException, name: str | None = None) -> ApiError:
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
    if _is_connection_error(exc):
        return _unavailable(exc)
    return ApiError(f"Docker error: {exc}", code="docker_error", status=502)


def _docker_errors() -> tuple[type[BaseException], ...]:
    return (docker.errors.DockerException, requests.exceptions.RequestException)


def _health_of(state: dict) -> str:
    health = state.get("Health") or {}
    status = health.get("Status")
    return status if status in ("healthy", "unhealthy", "starting") else "none"


def _has_healthcheck(config: dict) -> bool:
    hc = config.get("Healthcheck") or {}
    test = hc.get("Test") or []
    return bool(test) and test[0] != "NONE"


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


def merge_env(old_env: list[str] | None, changes: dict[str, str]) -> list[str]:
    """Return ``old_env`` ("K=V" list) with keys in ``changes`` replaced in place or appended."""
    out: list[str] = []
    seen: set[str] = set()
    for item in old_env or []:
        key = item.split("=", 1)[0]
        if key in changes:
            if key in seen:
                continue
            out.append(f"{key}={changes[key]}")
            seen.add(key)
        else:
            out.append(item)
    for key, value in changes.items():
        if key not in seen:
            out.append(f"{key}={value}")
    return out


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
                          expect_model: str | None = None,
                          on_step: StepCallback | None = None) -> dict:
        """Replace container ``name`` by a copy whose env has ``env_changes`` applied.

        Sequence: inspect -> stop old -> rename old to ``<name>-backup-<id12>`` -> create new
        (same image/config/HostConfig/networks, new Env) -> start -> wait until ready ->
        remove backup. On any failure after the old container was touched, the new container
        (if any) is removed, the backup is renamed back and restarted (if it was running),
        and ``SwitchFailed`` is raised with the failed container's last log lines.
        """
        self._check_allowed(name)
        if not self._switch_lock.acquire(blocking=False):
            raise Conflict("A recreate of a managed container is already running.",
                           code="switch_in_progress")
        try:
            return self._recreate(name, dict(env_changes), timeout=timeout, health_url=health_url,
                                  models_url=models_url, expect_model=expect_model,
                                  on_step=on_step)
        finally:
            self._switch_lock.release()

    def _recreate(self, name: str, env_changes: dict[str, str], *, timeout: float,
                  health_url: str | None, models_url: str | None, expect_model: str | None,
                  on_step: StepCallback | None) -> dict:
        t0 = time.monotonic()
        steps: list[dict] = []

        def step(step_name: str, **info: Any) -> None:
            entry = {"step": step_name, "at_seconds": round(time.monotonic() - t0, 3), **info}
            steps.append(entry)
            log.info("recreate %s: %s %s", name, step_name, info)
            if on_step is not None:
                try:
                    on_step(step_name, dict(info))
                except Exception:  # noqa: BLE001 - a progress hook must not break the switch
                    log.exception("on_step callback failed at %s", step_name)

        old = self._inspect(name)
        old_id: str = old["Id"]
        old_state = old.get("State") or {}
        was_running = bool(old_state.get("Running") or old_state.get("Restarting"))
        backup_name = f"{name}-backup-{old_id[:12]}"
        create_body, extra_networks = self._build_create_config(old, env_changes)
        step("inspected", container_id=old_id, image=create_body["Image"],
             was_running=was_running, changed_keys=sorted(env_changes))

        api = self.api

        # 1. stop the old container (keep it).
        if was_running:
            try:
                api.stop(old_id, timeout=self._stop_timeout(old))
            except _docker_errors() as exc:
                err = _translate(exc, name)
                self._best_effort_start(old_id, was_running)
                raise err from exc
        step("old_stopped", container_id=old_id)

        # 2. rename it out of the way.
        try:
            api.rename(old_id, backup_name)
        except _docker_errors() as exc:
            err = _translate(exc, name)
            self._best_effort_start(old_id, was_running)
            raise err from exc
        step("old_renamed", container_id=old_id, backup_name=backup_name)

        new_id: str | None = None
        try:
            # 3. create + connect extra networks + start.
            try:
                created = api.create_container_from_config(create_body, name=name)
                new_id = created["Id"]
                step("new_created", container_id=new_id, warnings=created.get("Warnings") or [])
                for net_name, endpoint in extra_networks:
                    self._connect(new_id, net_name, endpoint)
                    step("network_connected", container_id=new_id, network=net_name)
                api.start(new_id)
            except _docker_errors() as exc:
                raise _Failure(f"Could not create/start the new container: "
                               f"{_translate(exc, name).detail}") from exc
            step("new_started", container_id=new_id)

            # 4. wait until ready.
            deadline = t0 + timeout
            healthy_after = self._wait_ready(
                new_id, deadline, require_health=_has_healthcheck(create_body),
                health_url=health_url, models_url=models_url, expect_model=expect_model,
                started=t0)
            step("new_healthy", container_id=new_id, healthy_after_seconds=healthy_after)
        except _Failure as failure:
            reason = str(failure)
            step("failed", container_id=new_id, reason=reason)
            logs = self._rollback(name, old, new_id, backup_name, was_running, timeout,
                                  health_url, step)
            raise SwitchFailed(f"Recreating {name!r} failed: {reason}. "
                               f"The previous container was restored.", logs=logs) from None
        except BaseException as exc:  # unexpected (incl. KeyboardInterrupt): restore, re-raise
            step("failed", container_id=new_id, reason=repr(exc))
            try:
                self._rollback(name, old, new_id, backup_name, was_running, timeout,
                               health_url, step)
            except SwitchFailed:
                pass
            if isinstance(exc, _docker_errors()):
                raise _translate(exc, name) from exc
            raise

        # 5. success: drop the backup (volumes are kept).
        try:
            api.remove_container(old_id, v=False, force=True)
            step("backup_removed", container_id=old_id, backup_name=backup_name)
        except _docker_errors() as exc:
            log.warning("could not remove backup %s: %s", backup_name, exc)
            step("backup_remove_failed", container_id=old_id, backup_name=backup_name,
                 error=str(exc))
        step("done", container_id=new_id)
        return {
            "name": name,
            "old_container_id": old_id,
            "new_container_id": new_id,
            "backup_name": backup_name,
            "healthy_after_seconds": healthy_after,
            "total_seconds": round(time.monotonic() - t0, 3),
            "steps": steps,
        }

    # ------------------------------------------------------------ recreate bits
    def _build_create_config(self, old: dict, env_changes: dict[str, str]
                             ) -> tuple[dict, list[tuple[str, dict]]]:
        config = dict(old.get("Config") or {})
        host_config = dict(old.get("HostConfig") or {})
        network_mode = host_config.get("NetworkMode") or "default"

        image = config.get("Image") or old["Image"]
        if image != old["Image"]:
            # Keep the human-readable reference only if it still points at the same image.
            try:
                if self.api.inspect_image(image).get("Id") != old["Image"]:
                    image = old["Image"]
            except docker.errors.ImageNotFound:
                image = old["Image"]
            except _docker_errors() as exc:
                raise _translate(exc) from exc
        config["Image"] = image
        config["Env"] = merge_env(config.get("Env"), env_changes)

        # The default hostname is the old container's short id; host/container network modes
        # take the hostname from elsewhere. Only a user-chosen hostname is carried over.
        if (network_mode in ("host",) or network_mode.startswith("container:")
                or config.get("Hostname") == old["Id"][:12]):
            config.pop("Hostname", None)
            config.pop("Domainname", None)
        config["HostConfig"] = host_config

        extra: list[tuple[str, dict]] = []
        if network_mode not in ("host", "none") and not network_mode.startswith("container:"):
            networks = ((old.get("NetworkSettings") or {}).get("Networks") or {})
            endpoints = {net: self._endpoint_config(ep, old["Id"]) for net, ep in networks.items()}
            primary = network_mode if network_mode in endpoints else None
            if primary is None and network_mode == "default" and "bridge" in endpoints:
                primary = "bridge"
            if primary is None and endpoints:
                primary = next(iter(endpoints))
            if primary is not None:
                config["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoints[primary]}}
            extra = [(net, ep) for net, ep in endpoints.items() if net != primary]
        return config, extra

    @staticmethod
    def _endpoint_config(ep: dict, old_id: str) -> dict:
        aliases = [a for a in (ep.get("Aliases") or []) if a not in (old_id[:12], old_id)]
        out: dict[str, Any] = {}
        if ep.get("IPAMConfig"):
            out["IPAMConfig"] = ep["IPAMConfig"]
        if ep.get("Links"):
            out["Links"] = ep["Links"]
        if aliases:
            out["Aliases"] = aliases
        if ep.get("DriverOpts"):
            out["DriverOpts"] = ep["DriverOpts"]
        return out

    def _connect(self, container_id: str, network: str, endpoint: dict) -> None:
        ipam = endpoint.get("IPAMConfig") or {}
        self.api.connect_container_to_network(
            container_id, network,
            ipv4_address=ipam.get("IPv4Address") or None,
            ipv6_address=ipam.get("IPv6Address") or None,
            link_local_ips=ipam.get("LinkLocalIPs") or None,
            aliases=endpoint.get("Aliases"), links=endpoint.get("Links"),
            driver_opt=endpoint.get("DriverOpts"))

    def _wait_ready(self, container_id: str, deadline: float, *, require_health: bool,
                    health_url: str | None, models_url: str | None, expect_model: str | None,
                    started: float, fail_on_restart: bool = True) -> float:
        """Poll until ready; return seconds since ``started``. Raises _Failure."""
        last = "not checked yet"
        with httpx.Client(timeout=HTTP_PROBE_TIMEOUT, trust_env=False) as http:
            while True:
                try:
                    info = self.api.inspect_container(container_id)
                except docker.errors.NotFound as exc:
                    raise _Failure("the new container disappeared") from exc
                except _docker_errors() as exc:
                    if _is_connection_error(exc):
                        last = f"docker not answering: {exc}"
                        info = None
                    else:
                        raise _Failure(f"inspect failed: {exc}") from exc
                if info is not None:
                    state = info.get("State") or {}
                    status = state.get("Status")
                    if status in ("exited", "dead"):
                        raise _Failure(f"the container exited (status {status}, "
                                       f"exit code {state.get('ExitCode')}"
                                       f"{', OOM killed' if state.get('OOMKilled') else ''})")
                    if fail_on_restart and (state.get("Restarting") or int(info.get("RestartCount") or 0) > 0):
                        raise _Failure(f"the container crashed and is being restarted "
                                       f"(exit code {state.get('ExitCode')})")
                    ready, last = self._probe(info, http, require_health=require_health,
                                              health_url=health_url, models_url=models_url,
                                              expect_model=expect_model)
                    if ready:
                        return round(time.monotonic() - started, 3)
                now = time.monotonic()
                if now >= deadline:
                    raise _Failure(f"not ready within the timeout ({last})")
                time.sleep(min(POLL_INTERVAL, max(0.0, deadline - now)))

    @staticmethod
    def _probe(info: dict, http: httpx.Client, *, require_health: bool, health_url: str | None,
               models_url: str | None, expect_model: str | None) -> tuple[bool, str]:
        state = info.get("State") or {}
        if not state.get("Running"):
            return False, f"container status {state.get('Status')}"
        if require_health:
            health = _health_of(state)
            if health != "healthy":
                return False, f"container health is {health}"
        if health_url:
            try:
                resp = http.get(health_url)
            except httpx.HTTPError as exc:
                return False, f"{health_url}: {type(exc).__name__}"
            if resp.status_code != 200:
                return False, f"{health_url}: HTTP {resp.status_code}"
        if models_url and expect_model:
            try:
                resp = http.get(models_url)
                ids = [m.get("id") for m in (resp.json().get("data") or []) if isinstance(m, dict)]
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                return False, f"{models_url}: {type(exc).__name__}"
            if expect_model not in ids:
                return False, f"{models_url} lists {ids}, not {expect_model!r}"
        return True, "ready"

    def _best_effort_start(self, container_id: str, was_running: bool) -> None:
        if not was_running:
            return
        try:
            self.api.start(container_id)
        except Exception:  # noqa: BLE001
            log.exception("could not restart container %s after a failed step", container_id)

    def _rollback(self, name: str, old: dict, new_id: str | None, backup_name: str,
                  was_running: bool, timeout: float, health_url: str | None,
                  step: Callable[..., None]) -> list[str]:
        """Put the old container back. Returns the failed container's last log lines.

        Raises SwitchFailed(rolled_back=False) when the old container cannot be restored.
        """
        api = self.api
        old_id = old["Id"]
        logs: list[str] = []
        problems: list[str] = []
        if new_id is not None:
            try:
                logs = self._logs_by_id(new_id, FAILED_LOG_LINES)
            except ApiError as exc:
                problems.append(f"logs: {exc.detail}")
            try:
                api.remove_container(new_id, v=True, force=True)
                step("rollback_new_removed", container_id=new_id)
            except docker.errors.NotFound:
                pass
            except _docker_errors() as exc:
                problems.append(f"remove new: {exc}")
        else:
            # create may have failed after the name was taken; make sure it is free.
            try:
                stray = api.inspect_container(name)
                if stray.get("Id") != old_id and (stray.get("Name") or "").lstrip("/") == name:
                    api.remove_container(stray["Id"], v=True, force=True)
            except docker.errors.NotFound:
                pass
            except _docker_errors() as exc:
                problems.append(f"cleanup: {exc}")
        try:
            api.rename(old_id, name)
            step("rollback_renamed", container_id=old_id, name=name)
        except _docker_errors() as exc:
            problems.append(f"rename backup {backup_name} back to {name}: {exc}")
            raise SwitchFailed(
                f"Recreating {name!r} failed and the rollback failed too: {'; '.join(problems)}. "
                f"The previous container is kept as {backup_name!r}.",
                logs=logs, rolled_back=False) from exc
        if was_running:
            try:
                api.start(old_id)
                step("rollback_started", container_id=old_id)
                start = time.monotonic()
                hc = _has_healthcheck(old.get("Config") or {})
                self._wait_ready(old_id, start + timeout, require_health=hc,
                                 health_url=health_url, models_url=None, expect_model=None,
                                 started=start, fail_on_restart=False)
                step("rollback_ready", container_id=old_id)
            except (_Failure, *_docker_errors()) as exc:
                raise SwitchFailed(
                    f"Recreating {name!r} failed; the previous container was renamed back but "
                    f"did not come back up: {exc}", logs=logs, rolled_back=False) from exc
        step("rolled_back", container_id=old_id, problems=problems)
        return logs
