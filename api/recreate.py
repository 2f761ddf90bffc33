"""A Watchtower-style recreate: replace a container by a copy with a changed environment, wait
until it is ready, and put the old one back if it never is. See docs/containers.md.

No image endpoint is called, so a Docker socket proxy with `IMAGES=0` allows the whole sequence:
the new container is created from the old one's image reference and, when that reference no
longer names the old image (a moved tag) or is gone, created again from the old image's id.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import docker
import docker.errors

from .docker_errors import SwitchFailed, docker_errors, has_healthcheck, translate
from .errors import ApiError
from .readiness import NotReady, ReadyCheck, wait_ready

log = logging.getLogger(__name__)

FAILED_LOG_LINES = 50
StepCallback = Callable[[str, dict], None]


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


def create_config(old: dict, env_changes: dict[str, str]) -> tuple[dict, list[tuple[str, dict]]]:
    """The create body for the copy (whole Config and raw HostConfig, new Env) and the extra
    networks to connect after the create."""
    config = dict(old.get("Config") or {})
    host_config = dict(old.get("HostConfig") or {})
    network_mode = host_config.get("NetworkMode") or "default"
    config["Image"] = config.get("Image") or old["Image"]
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
        endpoints = {net: _endpoint_config(ep, old["Id"]) for net, ep in networks.items()}
        primary = network_mode if network_mode in endpoints else None
        if primary is None and network_mode == "default" and "bridge" in endpoints:
            primary = "bridge"
        if primary is None and endpoints:
            primary = next(iter(endpoints))
        if primary is not None:
            config["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoints[primary]}}
        extra = [(net, ep) for net, ep in endpoints.items() if net != primary]
    return config, extra


def _endpoint_config(ep: dict, old_id: str) -> dict:
    aliases = [a for a in (ep.get("Aliases") or []) if a not in (old_id[:12], old_id)]
    out: dict[str, Any] = {}
    for key in ("IPAMConfig", "Links", "DriverOpts"):
        if ep.get(key):
            out[key] = ep[key]
    if aliases:
        out["Aliases"] = aliases
    return out


class Recreate:
    """One recreate of container ``name``: ``run()`` returns the summary or raises."""

    def __init__(self, api: docker.APIClient, old: dict, env_changes: dict[str, str], *, timeout: float,
                 check: ReadyCheck, stop_timeout: int, logs: Callable[[str, int], list[str]],
                 on_step: StepCallback | None = None):
        self.api = api
        self.old = old
        self.name = (old.get("Name") or "").lstrip("/")
        self.env_changes = env_changes
        self.timeout = timeout
        self.check = check
        self.stop_timeout = stop_timeout
        self.logs = logs
        self.on_step = on_step
        self.t0 = time.monotonic()
        self.steps: list[dict] = []

    def step(self, step_name: str, **info: Any) -> None:
        self.steps.append({"step": step_name, "at_seconds": round(time.monotonic() - self.t0, 3), **info})
        log.info("recreate %s: %s %s", self.name, step_name, info)
        if self.on_step is not None:
            try:
                self.on_step(step_name, dict(info))
            except Exception:  # noqa: BLE001 - a progress hook must not break the switch
                log.exception("on_step callback failed at %s", step_name)

    def run(self) -> dict:
        api, name, old = self.api, self.name, self.old
        old_id: str = old["Id"]
        old_state = old.get("State") or {}
        was_running = bool(old_state.get("Running") or old_state.get("Restarting"))
        backup_name = f"{name}-backup-{old_id[:12]}"
        create_body, extra_networks = create_config(old, self.env_changes)
        self.step("inspected", container_id=old_id, image=create_body["Image"],
                  was_running=was_running, changed_keys=sorted(self.env_changes))

        # 1. stop the old container (keep it).
        if was_running:
            self._on_old(lambda: api.stop(old_id, timeout=self.stop_timeout), was_running)
        self.step("old_stopped", container_id=old_id)
        # 2. rename it out of the way.
        self._on_old(lambda: api.rename(old_id, backup_name), was_running)
        self.step("old_renamed", container_id=old_id, backup_name=backup_name)

        new_id: str | None = None
        try:
            # 3. create + connect extra networks + start.
            try:
                new_id = self._create(create_body)
                for net_name, endpoint in extra_networks:
                    self._connect(new_id, net_name, endpoint)
                    self.step("network_connected", container_id=new_id, network=net_name)
                api.start(new_id)
            except docker_errors() as exc:
                raise NotReady(f"Could not create/start the new container: "
                               f"{translate(exc, name).detail}") from exc
            self.step("new_started", container_id=new_id)

            # 4. wait until ready.
            check = ReadyCheck(has_healthcheck(create_body), self.check.health_url, self.check.models_url,
                               self.check.expect_model, self.check.headers)
            healthy_after = wait_ready(api, new_id, self.t0 + self.timeout, check, started=self.t0)
            self.step("new_healthy", container_id=new_id, healthy_after_seconds=healthy_after)
        except NotReady as failure:
            reason = str(failure)
            self.step("failed", container_id=new_id, reason=reason)
            logs = self._rollback(new_id, backup_name, was_running)
            raise SwitchFailed(f"Recreating {name!r} failed: {reason}. "
                               f"The previous container was restored.", logs=logs) from None
        except BaseException as exc:  # unexpected (incl. KeyboardInterrupt): restore, re-raise
            self.step("failed", container_id=new_id, reason=repr(exc))
            try:
                self._rollback(new_id, backup_name, was_running)
            except SwitchFailed:
                pass
            if isinstance(exc, docker_errors()):
                raise translate(exc, name) from exc
            raise

        # 5. success: drop the backup (volumes are kept).
        try:
            api.remove_container(old_id, v=False, force=True)
            self.step("backup_removed", container_id=old_id, backup_name=backup_name)
        except docker_errors() as exc:
            log.warning("could not remove backup %s: %s", backup_name, exc)
            self.step("backup_remove_failed", container_id=old_id, backup_name=backup_name, error=str(exc))
        self.step("done", container_id=new_id)
        return {"name": name, "old_container_id": old_id, "new_container_id": new_id,
                "backup_name": backup_name, "healthy_after_seconds": healthy_after,
                "total_seconds": round(time.monotonic() - self.t0, 3), "steps": self.steps}

    def _on_old(self, action: Callable[[], Any], was_running: bool) -> None:
        """A step on the old container; on failure it is started again and the error raised."""
        try:
            action()
        except docker_errors() as exc:
            err = translate(exc, self.name)
            self._best_effort_start(self.old["Id"], was_running)
            raise err from exc

    def _create(self, body: dict) -> str:
        """Create from the image reference; if it no longer names the old image, from the image id."""
        image_id = self.old["Image"]
        try:
            created = self.api.create_container_from_config(body, name=self.name)
        except docker.errors.ImageNotFound:
            created = None
        if created is not None:
            if self.api.inspect_container(created["Id"]).get("Image") == image_id:
                self.step("new_created", container_id=created["Id"], warnings=created.get("Warnings") or [])
                return created["Id"]
            # The tag moved since the old container was created: never change what runs.
            self.api.remove_container(created["Id"], v=True, force=True)
        created = self.api.create_container_from_config({**body, "Image": image_id}, name=self.name)
        self.step("new_created", container_id=created["Id"], image=image_id,
                  warnings=created.get("Warnings") or [])
        return created["Id"]

    def _connect(self, container_id: str, network: str, endpoint: dict) -> None:
        ipam = endpoint.get("IPAMConfig") or {}
        self.api.connect_container_to_network(
            container_id, network,
            ipv4_address=ipam.get("IPv4Address") or None,
            ipv6_address=ipam.get("IPv6Address") or None,
            link_local_ips=ipam.get("LinkLocalIPs") or None,
            aliases=endpoint.get("Aliases"), links=endpoint.get("Links"),
            driver_opt=endpoint.get("DriverOpts"))

    def _best_effort_start(self, container_id: str, was_running: bool) -> None:
        if not was_running:
            return
        try:
            self.api.start(container_id)
        except Exception:  # noqa: BLE001
            log.exception("could not restart container %s after a failed step", container_id)

    def _rollback(self, new_id: str | None, backup_name: str, was_running: bool) -> list[str]:
        """Put the old container back. Returns the failed container's last log lines.

        Raises SwitchFailed(rolled_back=False) when the old container cannot be restored.
        """
        api, name = self.api, self.name
        old_id = self.old["Id"]
        logs: list[str] = []
        problems: list[str] = []
        if new_id is not None:
            try:
                logs = self.logs(new_id, FAILED_LOG_LINES)
            except ApiError as exc:
                problems.append(f"logs: {exc.detail}")
        # create may also have failed after the name was taken; make sure it is free.
        stray_id = new_id
        if stray_id is None:
            try:
                stray = api.inspect_container(name)
                if stray.get("Id") != old_id and (stray.get("Name") or "").lstrip("/") == name:
                    stray_id = stray["Id"]
            except docker.errors.NotFound:
                pass
            except docker_errors() as exc:
                problems.append(f"cleanup: {exc}")
        if stray_id is not None:
            try:
                api.remove_container(stray_id, v=True, force=True)
                self.step("rollback_new_removed", container_id=stray_id)
            except docker.errors.NotFound:
                pass
            except docker_errors() as exc:
                problems.append(f"remove new: {exc}")
        try:
            api.rename(old_id, name)
            self.step("rollback_renamed", container_id=old_id, name=name)
        except docker_errors() as exc:
            problems.append(f"rename backup {backup_name} back to {name}: {exc}")
            raise SwitchFailed(
                f"Recreating {name!r} failed and the rollback failed too: {'; '.join(problems)}. "
                f"The previous container is kept as {backup_name!r}.",
                logs=logs, rolled_back=False) from exc
        if was_running:
            try:
                api.start(old_id)
                self.step("rollback_started", container_id=old_id)
                start = time.monotonic()
                check = ReadyCheck(has_healthcheck(self.old.get("Config") or {}), self.check.health_url,
                                   headers=self.check.headers)
                wait_ready(api, old_id, start + self.timeout, check, started=start, fail_on_restart=False)
                self.step("rollback_ready", container_id=old_id)
            except (NotReady, *docker_errors()) as exc:
                raise SwitchFailed(
                    f"Recreating {name!r} failed; the previous container was renamed back but "
                    f"did not come back up: {exc}", logs=logs, rolled_back=False) from exc
        self.step("rolled_back", container_id=old_id, problems=problems)
        return logs
