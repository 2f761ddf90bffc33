"""The health-gated model switch: rewrite .env, recreate the inference container, roll back on failure."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import envfile
from .containers import ContainerManager, SwitchFailed
from .errors import ApiError, Conflict, ServiceUnavailable
from .jobs.manager import JobManager, LiveJob
from .models_cache import ModelCache
from .profiles import Profile, ProfileStore, revision_args
from .settings import Settings
from .validation import validate_repo_id, validate_variant
from .variants import cached_variant, cached_variant_count, downloaded_variant, require_variant

if TYPE_CHECKING:
    from .inspect.propose import ProfileProposer, Proposal

log = logging.getLogger(__name__)


class SwitchService:
    def __init__(self, settings: Settings, jobs: JobManager, models: ModelCache, containers: ContainerManager,
                 lock: threading.Lock, profiles: ProfileStore | None = None):
        self.settings = settings
        self.profiles = profiles or ProfileStore(settings.serve_profiles_file)
        self.jobs = jobs
        self.models = models
        self.containers = containers
        self.lock = lock   # shared with delete: neither may race the other
        # Set by the inspection wiring (built after the services): model_id -> Proposal | None.
        self.proposer: ProfileProposer | None = None

    def request(self, model_id: str, restart: bool, callback_url: str | None = None,
                variant: str | None = None) -> dict:
        validate_repo_id(model_id)
        variant = validate_variant(variant)
        envfile.validate_env_value(model_id)
        envfile.check_writable(self.settings.env_file)
        if not self.models.is_complete(model_id):
            raise Conflict(f"{model_id} is not completely downloaded.", code="model_not_downloaded")
        # A profile the allow-list refuses, a variant or tokenizer not in the cache: refused now, not mid-switch.
        self.serve_env(model_id, variant=variant)
        if restart and not self.containers.available():
            raise ServiceUnavailable("The Docker engine is not reachable; nothing was changed.",
                                     code="docker_unavailable")
        if not self.lock.acquire(blocking=False):
            raise Conflict("Another switch or delete is in progress.", code="switch_in_progress")
        try:
            # Checked again under the lock: a delete may have run between the check above and here.
            if not self.models.is_complete(model_id):
                raise Conflict(f"{model_id} is not completely downloaded.", code="model_not_downloaded")
            # The runner owns the lock from here and releases it when the job ends.
            params = {"restart": restart, **({"variant": variant} if variant else {})}
            return self.jobs.submit("switch", model_id, params, callback_url=callback_url)
        except BaseException:
            self.lock.release()
            raise

    def run(self, live: LiveJob, rec: dict) -> dict:
        try:
            params = rec["params"] or {}
            return self._switch(live, rec["model_id"], bool(params.get("restart", True)), params.get("variant"))
        finally:
            self.lock.release()

    def serve_env(self, model_id: str, proposed: dict | None = None, variant: str | None = None) -> dict[str, str]:
        """What .env must say to serve `model_id` (or its GGUF `variant`): the model, the variant,
        and the profile's flags (or, without a profile, the `proposed` ones) plus the revision pins
        (INFERENCE_ARGS). An empty INFERENCE_ARGS or DEFAULT_MODEL_VARIANT is only written where the
        key is already in .env, so a box without profiles sees nothing but DEFAULT_MODEL change.
        Raises Conflict when the variant or the profile's tokenizer cannot be served from the cache."""
        profile = self.profiles.get(model_id, variant) or (Profile(model_id, proposed) if proposed else None)
        status = self.models.status(model_id)
        if variant:
            cached_variant(model_id, self._snapshot(model_id, status), variant)
        else:
            require_variant(model_id, self._snapshot(model_id, status))
        tokenizer = profile.tokenizer if profile else None
        if tokenizer and not self.models.is_complete(tokenizer):
            raise Conflict(f"The profile's tokenizer {tokenizer} is not completely downloaded; vLLM runs offline "
                           "and would not find it.", code="tokenizer_not_downloaded")
        argv = (profile.argv() if profile else [])
        argv += revision_args(self.settings.hf_cache, model_id, status.get("commit"), tokenizer,
                              self.models.status(tokenizer).get("commit") if tokenizer else None)
        env = {envfile.DEFAULT_KEY: model_id}
        for key, value in ((envfile.ARGS_KEY, " ".join(argv)), (envfile.VARIANT_KEY, variant or "")):
            if value or self.active_env(key) is not None:
                env[key] = value
        return env

    def _snapshot(self, model_id: str, status: dict | None = None) -> Path | None:
        folder, commit = self.models.folder(model_id), (status or self.models.status(model_id)).get("commit")
        return folder / "snapshots" / commit if folder and commit else None

    def download_variant(self, model_id: str, include: list[str] | None) -> str | None:
        """The GGUF variant a completed download fetched (by its include patterns), for activate=true."""
        return downloaded_variant(self._snapshot(model_id), include)

    def active_env(self, key: str) -> str | None:
        """A key of .env as it says now (None when the key is absent or unreadable)."""
        try:
            return envfile.read_value(self.settings.env_file, key)
        except OSError:
            return None

    def _proposal(self, model_id: str, variant: str | None) -> Proposal | None:
        """The fit planner's profile for a model that has none (SWITCH_PROPOSE_PROFILE), or None.
        The planner sizes what the cache holds of the repo: for a GGUF variant that is right only
        when it is the one variant cached."""
        if not (self.settings.switch_propose_profile and self.proposer) or self.profiles.get(model_id, variant):
            return None
        if variant and cached_variant_count(self._snapshot(model_id)) != 1:
            return None
        try:
            return self.proposer.propose(model_id)
        except Exception as e:  # noqa: BLE001 - a proposal is advice: it never fails the switch
            log.warning("switch %s: no profile proposed: %s: %s", model_id, type(e).__name__, e)
            return None

    def _stale_variant(self, name: str, serve: dict[str, str]) -> dict[str, str]:
        """The variant key emptied for a container that still has one .env no longer names (the key
        was removed from .env by hand), so `repo:variant` cannot outlive the switch."""
        if envfile.VARIANT_KEY in serve:
            return {}
        try:
            env = self.containers.api.inspect_container(name)["Config"]["Env"] or []
        except Exception:  # noqa: BLE001 - the recreate itself reports an engine or container problem
            return {}
        return {envfile.VARIANT_KEY: ""} if any(e.startswith(envfile.VARIANT_KEY + "=") for e in env) else {}

    def _probe_headers(self) -> dict[str, str]:
        key = self.settings.inference_api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key and key.get_secret_value() else {}

    def _switch(self, live: LiveJob, model_id: str, restart: bool, variant: str | None = None) -> dict:
        started = time.monotonic()
        env_path = self.settings.env_file
        before = envfile.snapshot(env_path)
        steps: list[dict] = []
        result = {"previous_model": None, "previous_variant": None, "model_id": model_id, "variant": variant,
                  "restart": restart, "steps": steps}
        live.result = result

        def step(name: str, info: dict | None = None) -> None:
            steps.append({"step": name, "at_seconds": round(time.monotonic() - started, 3), **(info or {})})

        proposal = self._proposal(model_id, variant)
        result["proposed_profile"] = proposal.to_json() if proposal else None
        if proposal:
            step("profile_proposed", proposal.to_json())
            log.info("job %s: proposed for %s: %s", live.job_id, model_id, proposal.args)
        serve = self.serve_env(model_id, proposal.args if proposal else None, variant)
        # The alias itself comes from .env through the compose file (SERVED_MODEL_ALIAS).
        result["served_model_names"] = [self.settings.served_model_alias, model_id]
        result["inference_args"] = serve.get(envfile.ARGS_KEY, "")
        # The model and its arguments change together in one write, and roll back together.
        try:
            previous = envfile.set_values(env_path, serve)
            result["previous_model"] = previous[envfile.DEFAULT_KEY]
            result["previous_variant"] = previous.get(envfile.VARIANT_KEY) or None
        except OSError:   # it became unwritable after the submit's check
            envfile.check_writable(env_path)
            raise
        step("env_rewritten", {"env_file": str(env_path)})
        log.info("job %s: switch %s -> %s%s", live.job_id, result["previous_model"], model_id,
                 f":{variant}" if variant else "")
        if not restart:
            result["seconds"] = round(time.monotonic() - started, 3)
            return result
        name = self.settings.inference_container
        try:
            info = self.containers.recreate_with_env(
                name, {**serve, **self._stale_variant(name, serve)}, timeout=self.settings.switch_timeout,
                probe_headers=self._probe_headers(),
                health_url=self.settings.inference_health_url, models_url=self.settings.inference_models_url,
                expect_model=model_id if self.settings.inference_models_url else None,
                on_step=lambda s, i: step(s, {k: v for k, v in (i or {}).items() if _plain(v)}))
        except BaseException as e:
            envfile.restore(env_path, before)
            step("env_restored")
            result["logs"] = getattr(e, "logs", None)
            if isinstance(e, SwitchFailed):
                err = ApiError(f"{model_id} did not become healthy; rolled back to {result['previous_model']}. "
                               f"{e.detail}", code="switch_failed", status=502)
            elif isinstance(e, ApiError):
                err = ApiError(f"Switch to {model_id} failed and was rolled back: {e.detail}", code=e.code,
                               status=e.status)
            else:
                raise
            err.result = result
            raise err from e
        result["container"] = {k: info.get(k) for k in ("name", "new_container_id", "healthy_after_seconds")}
        result["seconds"] = round(time.monotonic() - started, 3)
        return result


def _plain(v) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None
