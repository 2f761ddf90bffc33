"""Services beyond downloads (cache, containers, switch, webhooks), built in the app factory."""
from __future__ import annotations

from .download.cache import HFCache
from .jobs.manager import JobManager
from .settings import Settings
from .webhooks import WebhookNotifier


class Services:
    def __init__(self, settings: Settings, jobs: JobManager, cache: HFCache):
        self.settings = settings
        self.jobs = jobs
        self.cache = cache
        self.webhooks = WebhookNotifier(settings, jobs.store)
        jobs.final_hooks.append(self.webhooks)

    def docker_available(self) -> bool:
        return False

    def routers(self) -> list:
        return []

    def close(self) -> None:
        self.webhooks.close()


def build_services(settings: Settings, jobs: JobManager, cache: HFCache) -> Services:
    return Services(settings, jobs, cache)
