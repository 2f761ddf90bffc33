"""The inspection objects, built in create_app and hung on app.state.inspection."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from .. import envfile
from ..download.engine import DownloadEngine
from ..jobs.store import JobStore
from ..settings import Settings
from .catalog import load_catalog
from .catalog_view import Catalog
from .gpu import GpuProbe
from .propose import ProfileProposer
from .service import Inspector
from .store import InspectionStore
from .updates import UpdateChecker


@dataclass
class Inspection:
    inspector: Inspector
    catalog: Catalog
    updates: UpdateChecker

    @staticmethod
    def routers() -> list:
        from ..routes import catalog, inspect
        return [inspect.router, catalog.router]


def build_inspection(settings: Settings, engine: DownloadEngine, jobs: JobStore, services) -> Inspection:
    entries = load_catalog(settings.catalog_file)      # a bad file stops start-up here, naming the line
    inspector = Inspector(settings, engine, InspectionStore(settings.state_db), GpuProbe(settings, services.containers),
                          jobs, services.profiles)
    # The switch is built before the inspector it asks for a proposed profile.
    services.switch.proposer = ProfileProposer(inspector, services.models)
    active_variant = partial(services.switch.active_env, envfile.VARIANT_KEY)
    return Inspection(inspector, Catalog(entries, inspector, services.models.active_model, active_variant),
                      UpdateChecker(settings, engine.cache, jobs))
