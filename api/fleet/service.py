"""Fleet operations in swarm mode: node listing, fleet downloads, the rolling switch, fleet delete.

Each operation on the nodes is a global job running the node CLI in the API's own image
(globaljob.py); the switch is a `service update` Swarm rolls out and, on failed health, rolls back
by itself (rollout.py). Jobs live in the same job table as downloads, with kinds fleet_*.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid

from docker.types import Mount, SecretReference

from .. import envfile
from ..errors import ApiError, Conflict, NotFound
from ..jobs.manager import JobManager, LiveJob
from ..jobs.store import ACTIVE, now_iso
from ..settings import Settings
from ..validation import validate_repo_id, validate_revision
from . import rollout
from .globaljob import GlobalJob, NodeRun
from .retry import RetryingJob, RetryPolicy
from .swarm import JobSpec, Swarm, env_dict

log = logging.getLogger(__name__)
NODE_MODELS = "/models"       # where a job task sees its node's models folder
LIST_TIMEOUT = 120.0


def spec_env(svc: dict | None) -> dict[str, str]:
    return env_dict(svc["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or []) if svc else {}


def spec_model(svc: dict | None) -> str | None:
    return spec_env(svc).get(rollout.KEY)


def serve_env(model_id: str, has_variant_key: bool) -> dict[str, str]:
    """A fleet switch serves the whole repo: a GGUF variant left from a single-box switch
    (DEFAULT_MODEL_VARIANT, docs/containers.md) is cleared with it, never carried to the new model."""
    return {rollout.KEY: model_id, **({envfile.VARIANT_KEY: ""} if has_variant_key else {})}


class FleetService:
    def __init__(self, settings: Settings, jobs: JobManager, swarm: Swarm | None = None):
        self.settings = settings
        self.jobs = jobs
        self.swarm = swarm or Swarm(settings.docker_host)
        self.lock = threading.Lock()          # one fleet switch or fleet delete at a time
        self._models_lock = threading.Lock()
        self._models: tuple[float, str, dict] | None = None   # (monotonic, at, by node id)
        jobs.runners.update({"fleet_download": self.run_download, "fleet_switch": self.run_switch,
                             "fleet_delete": self.run_delete})

    # -- common -----------------------------------------------------------------------------------
    def _require(self) -> dict:
        """Swarm mode is on and the inference service exists; returns its inspect data."""
        if self.settings.orchestrator != "swarm":
            raise Conflict("Fleet mode is off; set ORCHESTRATOR=swarm and INFERENCE_SERVICE.", code="fleet_disabled")
        try:
            return self.swarm.service(self.settings.inference_service)
        except NotFound:
            raise NotFound(f"The inference service {self.settings.inference_service!r} does not exist.",
                           code="service_not_found") from None

    def _spec(self, svc: dict, command: list[str], secrets: list[SecretReference]) -> JobSpec:
        s = self.settings
        env = {"MODELS_DIR": NODE_MODELS, "HF_ENDPOINT": s.hf_endpoint, "NODE_ID": "{{.Node.ID}}",
               "HF_HUB_DISABLE_TELEMETRY": "1", "DOWNLOAD_CONNECTIONS": str(s.download_connections),
               "MAX_TOTAL_CONNECTIONS": str(s.max_total_connections), "PART_SIZE_MB": str(s.part_size_mb),
               "STALL_TIMEOUT": str(s.stall_timeout), "CONNECT_TIMEOUT": str(s.connect_timeout),
               "MAX_RETRIES": str(s.max_retries), "RETRY_BACKOFF_MAX": str(s.retry_backoff_max),
               "DISK_RESERVE_MB": str(s.disk_reserve_mb)}
        if secrets:
            env["HF_TOKEN_FILE"] = f"/run/secrets/{secrets[0]['File']['Name']}"
        placement = svc["Spec"]["TaskTemplate"].get("Placement") or {}
        return JobSpec(name=f"llmbox-{command[0]}-{uuid.uuid4().hex[:10]}", image=s.fleet_image,
                       command=["python", "-m", "api.node", *command], env=env,
                       mounts=[Mount(NODE_MODELS, s.fleet_models_path, type="bind")],
                       constraints=list(placement.get("Constraints") or []),
                       labels={"llmbox.fleet.job": command[0], "llmbox.fleet.service": s.inference_service},
                       secrets=secrets)

    def run_on_nodes(self, command: list[str], timeout: float, abort: threading.Event,
                     live: LiveJob | None = None, key: str = "nodes") -> list[NodeRun]:
        svc = self._require()
        secrets, secret_id = [], None
        token = self.settings.token()
        if token and command[0] == "fetch":
            # A per-job Swarm secret: the token never appears in a service spec or a task's env.
            name = f"llmbox-hf-token-{uuid.uuid4().hex[:10]}"
            secret_id = self.swarm.create_secret(name, token.encode(), {"llmbox.fleet.job": "fetch"})
            secrets = [SecretReference(secret_id, name, filename="hf_token")]

        def update(runs: list[NodeRun]) -> None:
            if live is not None:
                live.result = {**(live.result or {}), key: [r.to_json() for r in runs]}
        spec = self._spec(svc, command, secrets)
        try:
            if command[0] == "fetch":   # the one command whose failed runs resume from their bytes
                policy = RetryPolicy(self.settings.fleet_node_retries, self.settings.fleet_retry_backoff)
                return RetryingJob(self.swarm, spec, timeout, abort, update, policy).run()
            return GlobalJob(self.swarm, spec, timeout, abort, update).run()
        finally:
            if secret_id:
                self.swarm.remove_secret(secret_id)

    @staticmethod
    def outcome(runs: list[NodeRun], what: str) -> dict:
        result = {"nodes": [r.to_json() for r in runs],
                  **{s: sum(r.state == s for r in runs) for s in ("complete", "failed", "skipped")}}
        if result["failed"] or not result["complete"]:
            bad = [f"{r.hostname or r.node_id[:12]}: {r.error_code}"
                   + (f" after {r.attempts} attempts" if r.attempts > 1 else "") for r in runs if r.state != "complete"]
            err = ApiError(f"{what} failed on {result['failed']} of {len(runs)} node(s) "
                           f"({'; '.join(bad)[:500]}).", code="fleet_nodes_failed", status=502)
            err.result = result
            raise err
        return result

    # -- nodes ------------------------------------------------------------------------------------
    def nodes(self, refresh: bool = False) -> dict:
        svc = self._require()
        tasks = {t["node_id"]: t for t in rollout.task_view(self.swarm, svc["ID"])}
        try:
            at, models, error = *self._cached_models(refresh), None
        except ApiError as e:   # no node can run a job: the nodes are still worth showing
            at, models, error = None, {}, e.detail
        out = []
        for n in self.swarm.nodes():
            spec, status, desc = n.get("Spec") or {}, n.get("Status") or {}, n.get("Description") or {}
            entry = models.get(n["ID"])
            listed = entry is not None and entry.state == "complete"
            out.append({"node_id": n["ID"], "hostname": desc.get("Hostname"), "role": spec.get("Role"),
                        "availability": spec.get("Availability"), "state": status.get("State"),
                        "address": status.get("Addr"), "labels": spec.get("Labels") or {},
                        "engine_version": (desc.get("Engine") or {}).get("EngineVersion"),
                        "inference": tasks.get(n["ID"]), "models": entry.models if listed else None,
                        "models_error": None if listed else (entry.error if entry else error)})
        return {"service": self.settings.inference_service, "model_id": spec_model(svc), "models_at": at,
                "nodes": sorted(out, key=lambda n: (n["hostname"] or "", n["node_id"]))}

    def _cached_models(self, refresh: bool) -> tuple[str | None, dict[str, NodeRun]]:
        with self._models_lock:   # one list job at a time; a second caller gets its answer
            hit = self._models
            if hit and not refresh and time.monotonic() - hit[0] < self.settings.fleet_nodes_ttl:
                return hit[1], hit[2]
            runs = self.run_on_nodes(["list"], LIST_TIMEOUT, threading.Event())
            self._models = (time.monotonic(), now_iso(), {r.node_id: r for r in runs})
            return self._models[1], self._models[2]

    # -- download ---------------------------------------------------------------------------------
    def request_download(self, model_id: str, revision: str | None, callback_url: str | None) -> tuple[dict, bool]:
        validate_repo_id(model_id)
        revision = validate_revision(revision)
        self._require()
        running = self.jobs.store.query(kind="fleet_download", model_id=model_id, revision=revision,
                                        statuses=ACTIVE, limit=1)
        if running:
            return self.jobs.get(running[0]["job_id"]), False
        return self.jobs.submit("fleet_download", model_id, {}, callback_url=callback_url, revision=revision), True

    def run_download(self, live: LiveJob, rec: dict) -> dict:
        runs = self.run_on_nodes(["fetch", rec["model_id"], "--revision", rec["revision"] or "main"],
                                 self.settings.fleet_job_timeout, live.abort, live)
        return self.outcome(runs, f"Downloading {rec['model_id']}")

    # -- switch -----------------------------------------------------------------------------------
    def request_switch(self, model_id: str, callback_url: str | None) -> dict:
        validate_repo_id(model_id)
        envfile.validate_env_value(model_id)
        self._require()
        if not self.lock.acquire(blocking=False):
            raise Conflict("Another fleet switch or delete is in progress.", code="switch_in_progress")
        try:   # the runner owns the lock from here and releases it when the job ends
            return self.jobs.submit("fleet_switch", model_id, {}, callback_url=callback_url)
        except BaseException:
            self.lock.release()
            raise

    def run_switch(self, live: LiveJob, rec: dict) -> dict:
        try:
            return self._switch(live, rec["model_id"])
        finally:
            self.lock.release()

    def _switch(self, live: LiveJob, model_id: str) -> dict:
        name = self.settings.inference_service
        svc = self._require()

        def publish(**fields) -> dict:
            # A new dict each time: readers serialise live.result from other threads.
            live.result = {**(live.result or {}), **fields}
            return live.result
        publish(model_id=model_id, previous_model=spec_model(svc), service=name, rolled_back=False,
                env_rewritten=False)
        fetched = self.run_on_nodes(["fetch", model_id], self.settings.fleet_job_timeout, live.abort, live,
                                    key="fetch")
        try:
            self.outcome(fetched, f"Fetching {model_id}")
        except ApiError as e:
            e.result, e.code = publish(fetch=e.result["nodes"]), "fetch_failed"
            raise
        svc = self._require()
        env = spec_env(svc)
        if env.get(rollout.KEY) != model_id or env.get(envfile.VARIANT_KEY):
            before = (svc.get("UpdateStatus") or {}).get("StartedAt")
            self.swarm.update_env(name, serve_env(model_id, envfile.VARIANT_KEY in env))
            log.info("job %s: service %s updating to %s", live.job_id, name, model_id)
            view = rollout.follow(self.swarm, name, before, self.settings.switch_timeout, live.abort,
                                  lambda v: publish(**v))
            state = view["update_state"]
            if state != rollout.DONE:
                rolled_back = state in rollout.ROLLED_BACK
                reasons = rollout.failure_reasons(self.swarm, svc["ID"], model_id)
                reason = "; ".join([*view["messages"], *reasons]) or f"update {state}"
                code = "rolled_back" if rolled_back else "switch_timeout" if state is None else "update_paused"
                err = ApiError(f"The rollout of {model_id} did not complete: {reason}", code=code, status=502)
                err.result = publish(**view, rolled_back=rolled_back, reason=reason)
                raise err
            publish(**view)
        # Only once every node runs it.
        has_variant = envfile.read_value(self.settings.env_file, envfile.VARIANT_KEY) is not None
        envfile.set_values(self.settings.env_file, serve_env(model_id, has_variant))
        return publish(env_rewritten=True)

    # -- delete -----------------------------------------------------------------------------------
    def request_delete(self, model_id: str, force: bool, callback_url: str | None) -> dict:
        validate_repo_id(model_id)
        if not self.lock.acquire(blocking=False):
            raise Conflict("A fleet switch or delete is in progress.", code="switch_in_progress")
        try:
            if spec_model(self._require()) == model_id:
                raise Conflict(f"{model_id} is the model of service {self.settings.inference_service}; "
                               "switch the fleet first.", code="model_active")
            return self.jobs.submit("fleet_delete", model_id, {"force": force}, callback_url=callback_url)
        except BaseException:
            self.lock.release()
            raise

    def run_delete(self, live: LiveJob, rec: dict) -> dict:
        try:
            force = ["--force"] if (rec["params"] or {}).get("force") else []
            runs = self.run_on_nodes(["delete", rec["model_id"], *force], self.settings.fleet_job_timeout,
                                     live.abort, live)
            for r in runs:   # a node that never had the model is fine
                if r.error_code == "model_not_found":
                    r.state, r.error, r.error_code, r.result = "complete", None, None, {"absent": True}
            return self.outcome(runs, f"Deleting {rec['model_id']}")
        finally:
            self.lock.release()

    def close(self) -> None:
        self.swarm.close()
