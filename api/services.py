"""Services beyond downloads (cache, containers, switch, webhooks), built in the app factory."""
from __future__ import annotations

import logging
import threading

from .containers import ContainerManager
from .download.cache import HFCache
from .jobs.manager import JobManager
from .models_cache import ModelCache
from .profiles import ProfileStore
from .settings import Settings
from .switch import SwitchService
from .webhooks import WebhookNotifier

log = logging.getLogger(__name__)


class Services:
    def __init__(self, settings: Settings, jobs: JobManager, cache: HFCache):
        self.settings = settings
        self.jobs = jobs
        self.cache = cache
        self.lock = threading.Lock()   # one switch or delete at a time
        self.models = ModelCache(settings, cache, jobs)
        self.containers = ContainerManager(settings)
        self.profiles = ProfileStore(settings.serve_profiles_file)
        self.switch = SwitchService(settings, jobs, self.models, self.containers, self.lock, self.profiles)
        self.webhooks = WebhookNotifier(settings, jobs.store)
        jobs.runners["switch"] = self.switch.run
        jobs.final_hooks.append(self._activate_after_download)
        jobs.final_hooks.append(self.webhooks)
        self.models.purge_trash()

    def _activate_after_download(self, job: dict) -> None:
        """activate=true on a download: a switch job follows when it completes."""
        if job["kind"] != "download" or job["status"] != "complete":
            return
        rec = self.jobs.store.get(job["job_id"])
        if not (rec and (rec["params"] or {}).get("activate")):
            return
        try:
            # A download of one GGUF variant activates that variant (vLLM cannot serve a whole GGUF repo).
            variant = self.switch.download_variant(job["model_id"], (rec["params"] or {}).get("include"))
            sw = self.switch.request(job["model_id"], restart=True, callback_url=None, variant=variant)
            log.info("job %s: download complete, switch job %s started", job["job_id"], sw["job_id"])
            result = {**(rec["result"] or {}), "switch_job_id": sw["job_id"]}
        except Exception as e:  # noqa: BLE001 - recorded on the download job
            log.warning("job %s: activate failed: %s", job["job_id"], e)
            result = {**(rec["result"] or {}), "activate_error": getattr(e, "code", "activate_failed")}
        self.jobs.store.update(job["job_id"], result=result)
        job["result"] = result  # the hooks after this one (the webhook) send this same dict

    def delete_model(self, model_id: str, force: bool) -> dict:
        if not self.lock.acquire(timeout=5):
            from .errors import Conflict
            raise Conflict("A switch is in progress; try again when it has finished.", code="switch_in_progress")
        try:
            return self.models.delete(model_id, force)
        finally:
            self.lock.release()

    def docker_available(self) -> bool:
        return self.containers.available()

    def routers(self) -> list:
        from .routes import active, containers, models, profiles
        return [models.router, profiles.router, active.router, containers.router]

    def close(self) -> None:
        self.models.verifier.close()
        self.webhooks.close()
        self.containers.close()
        self.jobs.engine.registry.close()   # a transfer child process saves its offsets and ends


def build_services(settings: Settings, jobs: JobManager, cache: HFCache) -> Services:
    return Services(settings, jobs, cache)
