"""A serve profile proposed for a switch to a model that has none, from the cached files only.

The rule (docs/containers.md#proposed-profiles), kept simple on purpose:
- the fit planner judges the cached snapshot (config.json, else the GGUF header) on one GPU;
- `fits`, or `unknown` (no GPU memory known, no architecture): nothing is proposed;
- `does_not_fit` on one GPU and more than one GPU known: `tensor-parallel-size` is the largest
  power of two up to the GPU count that divides the attention heads, and the fit is judged again
  over that many GPUs;
- `fits_with_max_model_len` (on one GPU or over those GPUs): `max-model-len` is the largest
  context that fits;
- still `does_not_fit`: nothing is proposed (no flag here makes it fit).
"""
from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..models_cache import ModelCache
from ..profiles import validate_args
from .fit import Gpu, tensor_parallel_size
from .layout import CacheReader, file_row, read_layout
from .safetensors_meta import shards
from .service import Inspector

log = logging.getLogger(__name__)
_COMMIT = re.compile(r"[0-9a-f]{40}")
GIB = 1 << 30


@dataclass(frozen=True)
class Proposal:
    args: dict
    reason: str

    def to_json(self) -> dict:
        return asdict(self)


def cached_document(model_id: str, snapshot: Path) -> dict:
    """The parts of an inspection document the fit planner reads, built from a cached snapshot."""
    reader = CacheReader(snapshot)
    files = [file_row(path, size) for path, size in reader.files()]
    _, arch, variants = read_layout(reader, files)
    weights, _, _ = shards({f["path"] for f in files}, reader.small)
    return {"model_id": model_id, "files": files, "architecture": arch.to_json() if arch else None,
            "safetensors": {"files": weights} if weights else None, "variants": [v.to_json() for v in variants]}


def propose(doc: dict, gpu: Gpu, fit: Callable[..., dict]) -> Proposal | None:
    """`fit(doc, selected, gpu, tensor_parallel_size)` is Inspector.fit_selection."""
    selected = {f["path"] for f in doc["files"]}
    one = fit(doc, selected, gpu, 1)
    if one["verdict"] in ("fits", "unknown"):
        return None
    args: dict = {}
    chosen = one
    if one["verdict"] == "does_not_fit" and gpu.count > 1:
        tp = tensor_parallel_size(gpu.count, (doc.get("architecture") or {}).get("attention_heads"))
        if tp > 1:
            args["tensor-parallel-size"] = tp
            chosen = fit(doc, selected, gpu, tp)
    if chosen["verdict"] == "does_not_fit":
        return None
    if chosen["verdict"] == "fits_with_max_model_len":
        args["max-model-len"] = chosen["max_model_len_that_fits"]
    return Proposal(validate_args(args), _reason(one, chosen, gpu))


def _reason(one: dict, chosen: dict, gpu: Gpu) -> str:
    card = f"{gpu.total_bytes / GIB:.2f} GiB GPU ({gpu.source})"
    tp = chosen["tensor_parallel_size"]
    if tp > 1:
        words = f"it does not fit on one {card} ({one['reason']}); over {tp} of the {gpu.count} GPUs it fits"
    else:
        words = f"on one {card} it does not fit at its full context of {one['max_model_len']} tokens; it fits"
    if chosen["verdict"] == "fits_with_max_model_len":
        words += (f" with max-model-len {chosen['max_model_len_that_fits']}, the largest context that fits"
                  f" (of {chosen['max_model_len']})")
    else:
        words += " at its full context"
    return f"No serve profile: {words}. Applied to this switch only; save it with PUT /api/models/profile."


class ProfileProposer:
    def __init__(self, inspector: Inspector, models: ModelCache):
        self.inspector = inspector
        self.models = models

    def snapshot(self, model_id: str) -> Path | None:
        folder = self.models.folder(model_id)
        commit = self.models.status(model_id).get("commit")
        # The commit comes from a ref file on disk: only a commit id is joined into a path.
        if folder is None or not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
            return None
        snap = folder / "snapshots" / commit
        return snap if snap.is_dir() else None

    def propose(self, model_id: str) -> Proposal | None:
        snapshot = self.snapshot(model_id)
        if snapshot is None:
            return None
        try:
            doc = cached_document(model_id, snapshot)
        except (OSError, ValueError) as e:    # an unreadable config or index: no advice, no failure
            log.info("propose %s: the cached files could not be read: %s", model_id, type(e).__name__)
            return None
        if doc["architecture"] is None:       # nothing to plan with: the GPU is not even asked
            return None
        return propose(doc, self.inspector.gpu.detect(), self.inspector.fit_selection)
