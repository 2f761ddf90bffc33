"""The catalog as GET /api/catalog shows it: each entry with its size, fit, downloaded and active flags."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..errors import ApiError, InvalidInput, NotFound
from .catalog import CatalogEntry
from .service import Inspector, _entries, select


class Catalog:
    def __init__(self, entries: list[CatalogEntry], inspector: Inspector, active_model: Callable[[], str | None],
                 active_variant: Callable[[], str | None] = lambda: None):
        self.entries = entries
        self.inspector = inspector
        self.active_model = active_model
        self.active_variant = active_variant   # the GGUF variant served (DEFAULT_MODEL_VARIANT), or None

    def get(self, entry_id: str) -> CatalogEntry:
        found = next((e for e in self.entries if e.id == entry_id), None)
        if found is None:
            raise NotFound(f"No catalog entry {entry_id!r}; GET /api/catalog lists them.", code="catalog_entry_not_found")
        return found

    def resolve(self, entry_id: str, model_id: str | None) -> CatalogEntry:
        """For a download by catalog_id; a model_id given too must be the entry's."""
        entry = self.get(entry_id)
        if model_id is not None and model_id != entry.model_id:
            raise InvalidInput(f"catalog_id {entry_id!r} is {entry.model_id}, not {model_id}; give one of them.",
                               code="catalog_conflict")
        return entry

    def list(self, gpu_memory_gb: float | None = None) -> list[dict]:
        gpu = self.inspector.gpu_for(gpu_memory_gb)
        active = self.active_model()
        variant = self.active_variant() if active else None
        with ThreadPoolExecutor(4, thread_name_prefix="catalog") as pool:
            return list(pool.map(lambda e: self._row(e, gpu, active, variant), self.entries))

    def _row(self, entry: CatalogEntry, gpu, active: str | None, active_variant: str | None = None) -> dict:
        row = {**entry.to_json(), "size_bytes": None, "commit": None, "downloaded": False,
               "active": entry.model_id == active, "fit": None}
        try:
            doc = self.inspector.document(entry.model_id, entry.revision)
        except ApiError as e:
            return {**row, "error": e.code, "detail": e.detail}
        selected = select(doc, list(entry.include) if entry.include else None)
        files = _entries(doc, sorted(selected))
        cache = self.inspector.cache
        fit = self.inspector.fit_selection(doc, selected, gpu)
        if row["active"] and active_variant and fit.get("variant"):
            # One GGUF variant is served: of the repo's entries, only the one selecting it is active.
            row["active"] = fit["variant"] == active_variant
        return {**row, "commit": doc["commit"], "size_bytes": sum(f.size for f in files),
                "downloaded": bool(files) and all(cache.has_blob(entry.model_id, f) for f in files), "fit": fit}
