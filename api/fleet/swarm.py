"""A thin adapter over the Docker SDK's Swarm calls, talking to a manager node's engine.

Everything the fleet needs from Swarm goes through here, and every Docker error leaves as an
ApiError (503 when the engine is unreachable, 409 when it is no swarm manager, 502 otherwise).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import docker
import docker.errors
import requests
from docker.types import ContainerSpec, Mount, Placement, RestartPolicy, SecretReference
from docker.types import Healthcheck, ServiceMode, TaskTemplate

from ..errors import ApiError, Conflict, NotFound, ServiceUnavailable

log = logging.getLogger(__name__)
DOCKER_TIMEOUT = 30
TERMINAL = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")
ON_NODE = ("assigned", "accepted", "preparing", "ready", "starting", "running")   # a node holds it


@dataclass
class Task:
    id: str
    node_id: str
    state: str
    desired: str
    error: str | None
    exit_code: int | None
    env: dict[str, str] = field(default_factory=dict)
    created: str = ""
    service_id: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_attrs(cls, t: dict) -> "Task":
        status = t.get("Status") or {}
        env = (((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Env")) or []
        return cls(t["ID"], t.get("NodeID") or "", status.get("State", "new"), t.get("DesiredState", ""),
                   status.get("Err") or None, (status.get("ContainerStatus") or {}).get("ExitCode"),
                   env_dict(env), t.get("CreatedAt", ""), t.get("ServiceID", ""))


@dataclass
class JobSpec:
    """A global-job service: one task on every node that matches the constraints."""
    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    constraints: list[str]
    labels: dict[str, str]
    secrets: list[SecretReference] = field(default_factory=list)


def env_dict(env: list[str]) -> dict[str, str]:
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)


def _translate(exc: BaseException, what: str) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, docker.errors.NotFound):
        return NotFound(f"{what} does not exist in the swarm.", code="service_not_found")
    if isinstance(exc, docker.errors.APIError):
        text = exc.explanation or str(exc)
        if exc.status_code == 503 or "not a swarm manager" in text:
            return Conflict(f"The engine is not a swarm manager: {text}", code="not_a_swarm_manager")
        return ApiError(f"Docker error on {what}: {text}", code="docker_error", status=502)
    if isinstance(exc, (requests.exceptions.RequestException, docker.errors.DockerException)):
        return ServiceUnavailable(f"Docker engine is not reachable: {exc}", code="docker_unavailable")
    return ApiError(f"Docker error on {what}: {exc}", code="docker_error", status=502)


class Swarm:
    def __init__(self, docker_host: str | None):
        self.docker_host = docker_host
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def _call(self, what: str, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - every Docker failure becomes an ApiError
            raise _translate(e, what) from e

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                def make():
                    if self.docker_host:
                        return docker.DockerClient(base_url=self.docker_host, timeout=DOCKER_TIMEOUT)
                    return docker.from_env(timeout=DOCKER_TIMEOUT)
                self._client = self._call("the engine", make)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- reads ------------------------------------------------------------------------------------
    def nodes(self) -> list[dict]:
        return [n.attrs for n in self._call("the nodes", self.client.nodes.list)]

    def service(self, name: str) -> dict:
        return self._call(f"service {name!r}", self.client.api.inspect_service, name)

    def tasks(self, service_id: str) -> list[Task]:
        raw = self._call("the tasks", self.client.api.tasks, filters={"service": service_id})
        return [Task.from_attrs(t) for t in raw]

    def live_tasks(self, service_id: str, node_ids: list[str]) -> list[Task]:
        """A service's tasks still running on these nodes, also after the service is removed.

        Swarm 20.10 lets the running tasks of a removed job service run to their end (the service
        filter answers 404 by then, so this asks by node)."""
        raw = self._call("the tasks", self.client.api.tasks, filters={"node": node_ids})
        return [t for t in map(Task.from_attrs, raw) if t.service_id == service_id and t.state in ON_NODE]

    def stdout_lines(self, service_id: str) -> dict[str, list[str]]:
        """Each task's stdout lines, by task id (the `details` prefix names the task)."""
        chunks = self._call("the job logs", self.client.api.service_logs, service_id, stdout=True,
                            stderr=False, details=True, timestamps=False)
        out: dict[str, list[str]] = {}
        for line in self._call("the job logs", lambda: b"".join(chunks)).decode("utf-8", "replace").splitlines():
            details, _, message = line.partition(" ")
            attrs = dict(kv.split("=", 1) for kv in details.split(",") if "=" in kv)
            task = attrs.get("com.docker.swarm.task.id")
            if task:
                out.setdefault(task, []).append(message)
        return out

    # -- writes -----------------------------------------------------------------------------------
    def create_job(self, spec: JobSpec) -> str:
        template = TaskTemplate(
            # The image's own HEALTHCHECK is the API's: a CLI task would stay "starting" (and its
            # logs unread) until it ends.
            container_spec=ContainerSpec(spec.image, command=spec.command, env=spec.env, mounts=spec.mounts,
                                         secrets=spec.secrets or None, labels=spec.labels,
                                         healthcheck=Healthcheck(test=["NONE"])),
            restart_policy=RestartPolicy(condition="none"),
            placement=Placement(constraints=spec.constraints or None),
            networks=["host"])   # the node's own network: the Hub (or its mirror) as the node sees it
        resp = self._call("a job service", self.client.api.create_service, template, name=spec.name,
                          labels=spec.labels, mode=ServiceMode("global-job"))
        return resp["ID"]

    def remove(self, service_id: str) -> None:
        try:
            self.client.api.remove_service(service_id)
        except docker.errors.NotFound:
            pass
        except Exception as e:  # noqa: BLE001 - a leftover job service is logged, never fatal
            log.warning("could not remove job service %s: %s", service_id, e)

    def create_secret(self, name: str, data: bytes, labels: dict[str, str]) -> str:
        return self._call("a secret", self.client.api.create_secret, name, data, labels=labels)["ID"]

    def remove_secret(self, secret_id: str) -> None:
        try:
            self.client.api.remove_secret(secret_id)
        except Exception as e:  # noqa: BLE001
            log.warning("could not remove secret %s: %s", secret_id, e)

    def update_env(self, name: str, changes: dict[str, str], force_rollback: bool = True) -> dict:
        """A rolling update of the service's environment; Swarm rolls it back on failure.

        Returns the spec as it was, so callers can name the previous values."""
        svc = self.service(name)
        spec = svc["Spec"]
        template = dict(spec["TaskTemplate"])
        cs = dict(template["ContainerSpec"])
        env = env_dict(cs.get("Env") or [])
        env.update(changes)
        cs["Env"] = [f"{k}={v}" for k, v in env.items()]
        template["ContainerSpec"] = cs
        template["ForceUpdate"] = int(template.get("ForceUpdate") or 0)
        update = dict(spec.get("UpdateConfig") or {"Parallelism": 1, "Order": "stop-first"})
        if force_rollback:
            update["FailureAction"] = "rollback"
        self._call(f"service {name!r}", self.client.api.update_service, svc["ID"], svc["Version"]["Index"],
                   task_template=template, name=spec["Name"], labels=spec.get("Labels"), mode=spec.get("Mode"),
                   update_config=update, rollback_config=spec.get("RollbackConfig"),
                   endpoint_spec=spec.get("EndpointSpec"))
        return svc
