"""The download core (cache, job table, engine, job manager): built here for both the API and the
node CLI (`python -m api.node`), so a fleet node runs exactly what the API runs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .download.bandwidth import TokenBucket
from .download.cache import HFCache
from .download.engine import DownloadEngine
from .download.hub import bound_hub_calls
from .download.transfer import TransferRegistry
from .jobs.manager import JobManager
from .jobs.store import JobStore
from .settings import Settings


@dataclass
class Core:
    cache: HFCache
    store: JobStore
    engine: DownloadEngine
    jobs: JobManager


def build_core(settings: Settings, on_bytes: Callable[[int], None] | None = None) -> Core:
    bound_hub_calls(settings.connect_timeout, settings.stall_timeout)
    cache = HFCache(settings.hf_cache)
    settings.hf_cache.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.state_db)
    bandwidth = TokenBucket(settings.bandwidth_limit_bps)   # shared by every job (PUT /api/limits changes it)
    registry = TransferRegistry(cache.staging, settings.max_total_connections, in_child=settings.transfer_process,
                                bandwidth=bandwidth)
    engine = DownloadEngine(settings, cache, registry, on_bytes=on_bytes, bandwidth=bandwidth)
    return Core(cache, store, engine, JobManager(settings, store, engine))
