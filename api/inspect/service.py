"""Inspect a repo (cached per repo@commit), plan its fit, and dry-run a download."""
from __future__ import annotations

import logging
import threading

from huggingface_hub import HfApi
from huggingface_hub.errors import SafetensorsParsingError
from huggingface_hub.utils import filter_repo_objects

from ..download.engine import DownloadEngine, disk_free
from ..download.responses import TransientError
from ..download.hub import FileEntry, Plan, _map_error, make_plan
from ..errors import ApiError, DownloadError, InvalidInput, NotFound, ServiceUnavailable
from ..jobs.manager import HTTP_FOR_CODE
from ..jobs.store import ACTIVE, JobStore
from ..profiles import ProfileStore
from ..settings import Settings
from ..validation import validate_variant
from . import safetensors_meta
from .fit import Architecture, Gpu, disk_verdict, from_gguf, plan_fit
from .gpu import GpuProbe, gb_to_bytes
from .hubread import HubReader
from .layout import file_row, read_layout
from .store import InspectionStore

log = logging.getLogger(__name__)
_PROFILE_FLAGS = ("gpu-memory-utilization", "kv-cache-dtype", "max-model-len")
_KV_DTYPE_BYTES = {"auto": None, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp16": 2, "bfloat16": 2}


def hub_error(e: Exception, what: str, settings: Settings) -> ApiError:
    """A Hub failure as the API's error: 404/403 for permanent ones, 503 when the Hub is unreachable."""
    repo_id = what.split("@", 1)[0]
    mapped = e if isinstance(e, (DownloadError, TransientError)) else \
        _map_error(e, what, f"{settings.hf_endpoint}/{repo_id}", settings.token())
    if isinstance(mapped, DownloadError):
        return ApiError(mapped.detail, code=mapped.code, status=HTTP_FOR_CODE.get(mapped.code, 502))
    if isinstance(mapped, TransientError):
        return ServiceUnavailable(f"{mapped}; no cached inspection to answer from.", code="hub_unreachable")
    return ApiError(f"The Hub's answer for {what} could not be read ({type(e).__name__}).", code="hub_error",
                    status=502)


def _facts(info) -> dict:
    card = info.card_data.to_dict() if getattr(info, "card_data", None) else {}
    tags = list(info.tags or [])
    license_ = card.get("license") or next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)
    return {"gated": info.gated or False, "private": bool(info.private), "license": license_,
            "pipeline_tag": info.pipeline_tag or card.get("pipeline_tag"),
            "library": info.library_name or card.get("library_name"), "tags": tags,
            "last_modified": info.last_modified.isoformat().replace("+00:00", "Z") if info.last_modified else None}


def _entries(doc: dict, paths: list[str] | None = None) -> list[FileEntry]:
    wanted = None if paths is None else set(paths)
    return [FileEntry(f["path"], f["size"], f["sha1"], f["sha256"]) for f in doc["files"]
            if wanted is None or f["path"] in wanted]


def _architecture(d: dict | None) -> Architecture | None:
    if not d:
        return None
    return Architecture(**{k: v for k, v in d.items() if k != "kv_bytes_per_token"})


class Inspector:
    def __init__(self, settings: Settings, engine: DownloadEngine, store: InspectionStore, gpu: GpuProbe,
                 jobs: JobStore, profiles: ProfileStore | None = None):
        self.settings = settings
        self.engine = engine
        self.jobs = jobs
        self.profiles = profiles
        self.cache = engine.cache
        self.store = store
        self.gpu = gpu
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _api(self) -> HfApi:
        return HfApi(endpoint=self.settings.hf_endpoint, token=self.settings.token() or False)

    # -- the document, cached per commit ----------------------------------------------------------
    def document(self, repo_id: str, revision: str) -> dict:
        # One build per repo at a time: the catalog asks for the same repo for each of its variants.
        with self._locks_lock:
            lock = self._locks.setdefault(repo_id, threading.Lock())
        with lock:
            return self._document(repo_id, revision)

    def _document(self, repo_id: str, revision: str) -> dict:
        what = f"{repo_id}@{revision}"
        try:
            info = self._api().model_info(repo_id, revision=revision, files_metadata=True,
                                          timeout=self.settings.hub_timeout)
        except Exception as e:  # noqa: BLE001 - mapped below
            err = hub_error(e, what, self.settings)
            cached = self.store.latest(repo_id, revision) if err.status == 503 else None
            if cached is None:
                raise err from e
            log.info("inspect %s: Hub unreachable, answering from the cached inspection", what)
            return {**cached, "source": "cache", "stale": True}
        if not info.sha:
            raise ApiError(f"The Hub gave no commit for {what}.", code="hub_error", status=502)
        cached = self.store.get(repo_id, info.sha)
        if cached is not None:
            return {**cached, "source": "cache", "stale": False}
        try:
            doc = self._build(repo_id, revision, info)
        except ApiError:
            raise
        except Exception as e:  # noqa: BLE001
            log.warning("inspect %s failed: %s: %s", what, type(e).__name__, e)
            raise hub_error(e, what, self.settings) from e
        self.store.put(repo_id, revision, info.sha, doc)
        return {**doc, "source": "hub", "stale": False}

    def _build(self, repo_id: str, revision: str, info) -> dict:
        commit = info.sha
        reader = HubReader(self.settings.hf_endpoint, self.settings.token(), repo_id, commit,
                           self.settings.hub_timeout)
        files = []
        for s in info.siblings or []:
            lfs = s.lfs
            files.append({**file_row(s.rfilename, s.size or (lfs.size if lfs else 0)),
                          "sha256": lfs.sha256 if lfs else None, "sha1": s.blob_id, "lfs": lfs is not None})
        paths = {f["path"] for f in files}
        st = None
        if any(p.endswith(".safetensors") for p in paths):
            try:
                st = safetensors_meta.read(self._api(), reader, paths)
            except (SafetensorsParsingError, ValueError) as e:   # a broken file is a fact, not a failure
                st = {"error": "unreadable_header", "detail": str(e)[:300]}
        config, arch, variants = read_layout(reader, files)
        return {"model_id": repo_id, "revision": revision, "commit": commit, "repo": _facts(info),
                "files": files,
                "config": {k: config.get(k) for k in ("model_type", "architectures", "torch_dtype")}
                if isinstance(config, dict) else None,
                "architecture": arch.to_json() if arch else None, "safetensors": st,
                "variants": [v.to_json() for v in variants]}

    # -- the live parts: what is cached, what fits --------------------------------------------------
    def gpu_for(self, gpu_memory_gb: float | None) -> Gpu:
        if gpu_memory_gb is not None:
            return Gpu(gb_to_bytes(gpu_memory_gb), "request", 1)
        return self.gpu.detect()

    def _serve_args(self, repo_id: str, variant: str | None = None) -> dict:
        """The serve profile flags of the model (or of its GGUF variant) that change its memory:
        vLLM will run it with these."""
        try:
            variant = validate_variant(variant)
        except InvalidInput:
            variant = None   # a name no switch accepts has no profile of its own
        try:
            profile = self.profiles.get(repo_id, variant) if self.profiles else None
        except ApiError:   # a broken profiles file is reported by the profile routes, not here
            return {}
        return {k: v for k, v in (profile.args if profile else {}).items() if k in _PROFILE_FLAGS}

    def _fit(self, repo_id: str, weights: int, arch: Architecture | None, gpu: Gpu,
             max_model_len: int | None, tensor_parallel_size: int = 1, variant: str | None = None) -> dict:
        s = self.settings
        served = self._serve_args(repo_id, variant)
        utilization = float(served.get("gpu-memory-utilization", s.gpu_memory_utilization))
        kv_bytes = _KV_DTYPE_BYTES.get(served.get("kv-cache-dtype", s.kv_cache_dtype))
        out = plan_fit(weights, arch, gpu, utilization=utilization, overhead_bytes=s.fit_overhead_mb << 20,
                       kv_dtype_bytes=kv_bytes, max_model_len=max_model_len or served.get("max-model-len"),
                       tensor_parallel_size=tensor_parallel_size)
        return {**out, "serve_profile": served}

    def _disk(self, plan: Plan) -> dict:
        free, _ = disk_free(self.cache.root)
        promised = sum(self.engine.needed_bytes(Plan.from_json(rec["plan"]))
                       for rec in self.jobs.query(kind="download", statuses=ACTIVE, limit=1000)
                       if rec["plan"] and rec["model_id"] != plan.repo_id)
        return disk_verdict(self.engine.needed_bytes(plan), free, self.settings.disk_reserve_mb << 20, promised)

    @staticmethod
    def _weights(doc: dict, selected: set[str] | None = None) -> int:
        sizes = {f["path"]: f["size"] for f in doc["files"] if selected is None or f["path"] in selected}
        shards = (doc.get("safetensors") or {}).get("files") or []
        if any(p in sizes for p in shards):
            return sum(sizes.get(p, 0) for p in shards)
        weights = [f for f in doc["files"] if f["kind"] == "weights" and f["path"] in sizes]
        pytorch = [f for f in weights if f["format"] == "pytorch"]
        return sum(f["size"] for f in (pytorch or weights))

    def fit(self, repo_id: str, revision: str, *, variant: str | None = None, max_model_len: int | None = None,
            gpu_memory_gb: float | None = None, doc: dict | None = None) -> dict:
        doc = doc or self.document(repo_id, revision)
        gpu = self.gpu_for(gpu_memory_gb)
        base = _architecture(doc.get("architecture"))
        variants = doc.get("variants") or []
        head = {"model_id": repo_id, "revision": revision, "commit": doc["commit"]}
        if not variants:
            if variant:
                raise NotFound(f"{repo_id} has no GGUF variants; leave variant out.", code="variant_not_found")
            plan = Plan(repo_id, revision, doc["commit"], _entries(doc))
            return {**head, "variant": None, "fit": self._fit(repo_id, self._weights(doc), base, gpu, max_model_len),
                    "disk": self._disk(plan)}
        rows = []
        for v in variants:
            arch = (from_gguf(v["header"]) if v.get("header") else None) or base
            rows.append((v, self._fit(repo_id, v["size"], arch, gpu, max_model_len, variant=v["name"])))
        if variant is not None:
            chosen = next((r for r in rows if r[0]["name"] == variant), None)
            if chosen is None:
                names = ", ".join(v["name"] for v in variants)
                raise NotFound(f"{repo_id} has no variant {variant!r}; it has {names}.", code="variant_not_found")
        fitting = [r for r in rows if r[1]["verdict"] in ("fits", "fits_with_max_model_len")]
        full = [r for r in rows if r[1]["verdict"] == "fits"]
        if variant is None:
            chosen = rows[0]
        v, verdict = chosen
        plan = Plan(repo_id, revision, doc["commit"], _entries(doc, v["files"]))
        return {**head, "variant": v["name"], "include": v["include"], "fit": verdict, "disk": self._disk(plan),
                "smallest_variant_that_fits": fitting[0][0]["name"] if fitting else None,
                "largest_variant_that_fits": full[-1][0]["name"] if full else None,
                "variants": [{"name": r[0]["name"], "size": r[0]["size"], "include": r[0]["include"],
                              "verdict": r[1]["verdict"], "max_model_len_that_fits": r[1]["max_model_len_that_fits"]}
                             for r in rows]}

    def inspect(self, repo_id: str, revision: str, *, max_model_len: int | None = None,
                gpu_memory_gb: float | None = None) -> dict:
        doc = self.document(repo_id, revision)
        files = [{**f, "cached": self.cache.has_blob(repo_id, e)} for f, e in zip(doc["files"], _entries(doc))]
        fit = self.fit(repo_id, revision, max_model_len=max_model_len, gpu_memory_gb=gpu_memory_gb, doc=doc)
        return {**doc, "files": files,
                "totals": {"files": len(files), "bytes": sum(f["size"] for f in files),
                           "bytes_cached": sum(f["size"] for f in files if f["cached"])},
                "fit": {k: v for k, v in fit.items() if k not in ("model_id", "revision", "commit")}}

    # -- dry run ------------------------------------------------------------------------------------
    def dry_run(self, repo_id: str, revision: str, include: list[str] | None, exclude: list[str] | None) -> dict:
        what = f"{repo_id}@{revision}"
        try:
            plan = make_plan(self.settings.hf_endpoint, self.settings.token(), repo_id, revision, include, exclude)
        except (DownloadError, TransientError) as e:
            raise hub_error(e, what, self.settings) from e
        reused = [f.path for f in plan.files if self.cache.has_blob(repo_id, f)]
        out = {"status": "dry_run", "model_id": repo_id, "revision": revision, "commit": plan.commit,
               "files": [{**f.to_json(), "cached": f.path in reused} for f in plan.files],
               "bytes_total": plan.total_bytes, "bytes_to_fetch": self.engine.needed_bytes(plan),
               "files_reused": len(reused), "disk": self._disk(plan), "fit": None}
        try:
            doc = self.document(repo_id, plan.commit)
        except ApiError as e:
            out["fit_error"] = e.code
            return out
        out["fit"] = self.fit_selection(doc, {f.path for f in plan.files}, self.gpu_for(None))
        return out

    def fit_selection(self, doc: dict, selected: set[str], gpu: Gpu, tensor_parallel_size: int = 1) -> dict:
        """The fit of what a download with this selection would fetch. Several GGUF variants selected:
        the largest is judged, since it is the one that may not fit."""
        variants = [v for v in doc.get("variants") or [] if set(v["files"]) <= selected]
        base = _architecture(doc.get("architecture"))
        tp = tensor_parallel_size
        if not variants:
            return {"variant": None,
                    **self._fit(doc["model_id"], self._weights(doc, selected), base, gpu, None, tp)}
        v = variants[-1]
        arch = (from_gguf(v["header"]) if v.get("header") else None) or base
        return {"variant": v["name"], **self._fit(doc["model_id"], v["size"], arch, gpu, None, tp, v["name"])}

def select(doc: dict, include: list[str] | None) -> set[str]:
    return set(filter_repo_objects([f["path"] for f in doc["files"]], allow_patterns=include))
