"""Inspection, fit planner and dry run: real HTTP against the simulator's model-like repos."""
from __future__ import annotations

import pytest

from api.testing.hubsim import model_repos as mr
from api.routes import inspect_schemas as schemas
from api.testing.hubsim.faults import Fault

from ._dl import assert_error, start, wait_complete

MiB = 1 << 20
GiB = 1 << 30
OVERHEAD = 1024 * MiB  # FIT_OVERHEAD_MB's default


@pytest.fixture(scope="module")
def repos(sim):
    return mr.install(sim)


def served(sim, repo_id: str) -> int:
    """Body bytes the simulator served of the repo's files (hub and CDN)."""
    paths = {p for files in sim.describe()[repo_id]["commits"].values() for p in files}
    return sum(sim.served_bytes(repo_id, p) for p in paths)


def shard_sizes(sim) -> int:
    return sum(sim.file_info(mr.QWEN25, f"model-{n:05d}-of-00004.safetensors")["size"] for n in range(1, 5))


def test_inspect_sharded_safetensors_reads_headers_only_and_is_cached(api, sim, repos):
    before = served(sim, mr.QWEN25)
    r = api.get("/api/inspect", params={"model_id": mr.QWEN25})
    assert r.status_code == 200, r.text
    doc = r.json()
    read = served(sim, mr.QWEN25) - before
    total = sum(f["size"] for f in doc["files"])
    assert 0 < read <= 1_000_000 < total, (read, total)
    assert doc["commit"] == repos[mr.QWEN25] and doc["source"] == "hub"
    schemas.Inspection.model_validate(doc)   # the OpenAPI document describes the answer

    # Parameters of the stored mini model, counted by hand.
    h, kv, i, v, n = 256, 64, 512, 4096, 4
    per_layer_f16 = h * h + h + 2 * (kv * h + kv) + h * h + 3 * i * h
    f16 = 2 * v * h + n * per_layer_f16
    f32 = n * 2 * h + h
    st = doc["safetensors"]
    assert st["sharded"] is True and len(st["files"]) == 4
    assert st["parameters_by_dtype"] == {"F16": f16, "F32": f32}
    assert st["parameters"] == f16 + f32

    # KV cache per token from Qwen2.5-7B's config.json: 2 x 28 layers x 4 kv heads x (3584/28) x bf16.
    arch = doc["architecture"]
    assert arch["kv_bytes_per_token"] == 2 * 28 * 4 * 128 * 2 == 57344
    assert arch["context_length"] == 32768 and arch["source"] == "config.json"

    kinds = {f["path"]: (f["kind"], f["format"]) for f in doc["files"]}
    assert kinds["model-00002-of-00004.safetensors"] == ("weights", "safetensors")
    assert kinds["config.json"] == ("config", "json")
    assert kinds["model.safetensors.index.json"] == ("config", "json")
    assert kinds["tokenizer.json"][0] == kinds["tokenizer_config.json"][0] == "tokenizer"
    assert kinds["README.md"][0] == kinds["LICENSE"][0] == "docs"
    shard = next(f for f in doc["files"] if f["path"] == "model-00001-of-00004.safetensors")
    assert shard["sha256"] == sim.file_info(mr.QWEN25, shard["path"])["sha256"] and shard["cached"] is False
    assert doc["repo"]["gated"] is False and doc["repo"]["last_modified"].startswith("2024-01-01")

    # Second inspect: the Hub answers 503, the state database answers instead, nothing read.
    sim.set_faults(Fault(repo=mr.QWEN25, on="any", status=503))
    before = served(sim, mr.QWEN25)
    again = api.get("/api/inspect", params={"model_id": mr.QWEN25})
    assert again.status_code == 200, again.text
    assert again.json()["source"] == "cache" and again.json()["stale"] is True
    assert again.json()["safetensors"] == st and served(sim, mr.QWEN25) == before
    sim.clear_faults()
    # An unknown repo with the Hub down and nothing cached is a clear 503, not a 500.
    sim.set_faults(Fault(on="api", status=503))
    assert_error(api.get("/api/inspect", params={"model_id": "llmbox-sim/never-inspected"}), 503, "hub_unreachable")


def test_llama3_config_and_single_file(api, repos):
    doc = api.get("/api/inspect", params={"model_id": mr.LLAMA3}).json()
    assert doc["architecture"]["kv_bytes_per_token"] == 2 * 32 * 8 * 128 * 2 == 131072
    assert doc["architecture"]["context_length"] == 8192
    h, kv, i, v = 256, 64, 512, 4096
    one_layer = h * h + h + 2 * (kv * h + kv) + h * h + 3 * i * h + 2 * h
    assert doc["safetensors"]["sharded"] is False
    assert doc["safetensors"]["parameters"] == 2 * v * h + one_layer + h
    assert {f["path"]: f["kind"] for f in doc["files"]}["original/params.json"] == "config"


def test_gguf_variants_grouped_and_read_from_headers(api, repos):
    doc = api.get("/api/inspect", params={"model_id": mr.QWEN3_GGUF}).json()
    variants = {v["name"]: v for v in doc["variants"]}
    assert list(variants) == ["IQ4_XS", "Q4_K_M", "Q5_K_M", "Q8_0"]  # smallest first
    q8 = variants["Q8_0"]
    assert q8["parts"] == 3 and q8["include"] == "Qwen3-8B-Q8_0-*-of-00003.gguf"
    assert q8["files"] == [f"Qwen3-8B-Q8_0-0000{n}-of-00003.gguf" for n in (1, 2, 3)]
    sizes = {f["path"]: f["size"] for f in doc["files"]}
    assert q8["size"] == sum(sizes[p] for p in q8["files"])
    for name, v in variants.items():
        assert v["quantization"] == name and v["quantization_source"] == "header"
        assert v["header"]["architecture"] == "qwen3" and v["header"]["context_length"] == 40960
    assert doc["architecture"]["kv_bytes_per_token"] == 2 * 36 * 8 * 128 * 2 == 147456
    assert {f["precision"] for f in doc["files"] if f["format"] == "gguf"} == {"iq4_xs", "q4_k_m", "q5_k_m", "q8_0"}
    for v in variants.values():   # each include pattern selects exactly its variant
        plan = api.post("/api/download-model", params={"model_id": mr.QWEN3_GGUF, "include": v["include"],
                                                       "dry_run": "true"}).json()
        assert sorted(f["path"] for f in plan["files"]) == v["files"] and plan["fit"]["variant"] == v["name"]

    # No quantisation in the file name: the header still tells.
    mystery = api.get("/api/inspect", params={"model_id": mr.MYSTERY_GGUF}).json()
    assert [(v["name"], v["quantization"], v["quantization_source"]) for v in mystery["variants"]] == \
        [("weights", "Q6_K", "header")]


def test_fit_verdict_at_the_byte_boundary(api_factory, sim, repos):
    api = api_factory(gpu_memory_utilization=1.0)
    required = shard_sizes(sim) + OVERHEAD + 57344 * 32768

    def fit(gpu_bytes: int, **params) -> dict:
        r = api.get("/api/fit", params={"model_id": mr.QWEN25, "gpu_memory_gb": gpu_bytes / GiB, **params})
        assert r.status_code == 200, r.text
        return r.json()["fit"]

    exact = fit(required)
    assert exact["verdict"] == "fits" and exact["required_bytes"] == required == exact["usable_bytes"]
    under = fit(required - 1)
    assert under["verdict"] == "fits_with_max_model_len"
    assert under["max_model_len_that_fits"] == 32768 - 16  # whole KV blocks of 16 tokens
    assert fit(shard_sizes(sim) + OVERHEAD - 1)["verdict"] == "does_not_fit"
    assert fit(required - 1, max_model_len=32752)["verdict"] == "fits"

    # GGUF: a card where Q4_K_M fits at full context, Q5_K_M and Q8_0 only with less.
    r = api.get("/api/fit", params={"model_id": mr.QWEN3_GGUF,
                                    "gpu_memory_gb": (OVERHEAD + 147456 * 40960 + 503552) / GiB}).json()
    schemas.FitAnswer.model_validate(r)
    assert r["smallest_variant_that_fits"] == "IQ4_XS" and r["largest_variant_that_fits"] == "Q4_K_M"
    assert {v["name"]: v["verdict"] for v in r["variants"]} == {
        "IQ4_XS": "fits", "Q4_K_M": "fits", "Q5_K_M": "fits_with_max_model_len", "Q8_0": "fits_with_max_model_len"}
    assert r["disk"]["bytes_to_fetch"] == 456544 and r["disk"]["verdict"] == "fits"
    assert_error(api.get("/api/fit", params={"model_id": mr.QWEN3_GGUF, "variant": "Q2_K"}), 404, "variant_not_found")


def test_gpu_memory_setting_and_unknown(api_factory, repos):
    unknown = api_factory().get("/api/fit", params={"model_id": mr.LLAMA3}).json()["fit"]
    assert unknown["verdict"] == "unknown" and unknown["gpu"]["source"] == "unknown"
    fit = api_factory(gpu_memory_gb=24).get("/api/fit", params={"model_id": mr.LLAMA3}).json()["fit"]
    assert fit["gpu"] == {"total_bytes": 24 * GiB, "source": "setting", "count": 1, "detail": None}
    assert fit["verdict"] == "fits" and fit["usable_bytes"] == int(24 * GiB * 0.9)


def test_fit_follows_the_models_serve_profile(api, repos):
    r = api.put("/api/models/profile", params={"model_id": mr.LLAMA3},
                json={"args": {"max-model-len": 4096, "gpu-memory-utilization": 0.5, "kv-cache-dtype": "fp8"}})
    assert r.status_code == 200, r.text
    fit = api.get("/api/fit", params={"model_id": mr.LLAMA3, "gpu_memory_gb": 24}).json()["fit"]
    assert fit["serve_profile"] == {"gpu-memory-utilization": 0.5, "kv-cache-dtype": "fp8", "max-model-len": 4096}
    assert fit["usable_bytes"] == 12 * GiB and fit["gpu_memory_utilization"] == 0.5
    assert fit["kv_bytes_per_token"] == 2 * 32 * 8 * 128 * 1 and fit["max_model_len"] == 4096
    # A max_model_len in the request still wins.
    assert api.get("/api/fit", params={"model_id": mr.LLAMA3, "max_model_len": 1024}).json()["fit"]["max_model_len"] == 1024


def test_dry_run_writes_nothing_then_counts_reused_blobs(api, sim, repos, tmp_path):
    models = api.settings.models_dir

    def on_disk():
        return sorted(str(p.relative_to(models)) for p in models.rglob("*")) if models.exists() else []
    before = on_disk()
    r = api.post("/api/download-model", params={"model_id": mr.QWEN3_GGUF, "include": "*Q8_0*", "dry_run": "true"})
    assert r.status_code == 200, r.text
    plan = r.json()
    schemas.DryRun.model_validate(plan)
    assert plan["status"] == "dry_run" and len(plan["files"]) == 3
    fetched = sum(sim.file_info(mr.QWEN3_GGUF, f["path"])["size"] for f in plan["files"])
    assert plan["bytes_to_fetch"] == plan["bytes_total"] == fetched
    assert plan["disk"]["verdict"] == "fits" and plan["fit"]["variant"] == "Q8_0"
    assert on_disk() == before
    assert api.get("/api/jobs").json() == []

    job = start(api, mr.QWEN3_GGUF, include="Qwen3-8B-Q4_K_M.gguf")
    wait_complete(api, job["job_id"])
    again = api.post("/api/download-model", json={"model_id": mr.QWEN3_GGUF, "include": "*Q4_K_M*",
                                                  "dry_run": True}).json()
    assert again["bytes_to_fetch"] == 0 and again["files_reused"] == 1 and again["files"][0]["cached"] is True
    inspected = api.get("/api/inspect", params={"model_id": mr.QWEN3_GGUF}).json()
    assert inspected["totals"]["bytes_cached"] == sim.file_info(mr.QWEN3_GGUF, "Qwen3-8B-Q4_K_M.gguf")["size"]


def test_gated_repo_needs_the_token(api_factory, sim):
    from .conftest import GATED_TOKEN
    sim.add_repo("llmbox-sim/gated-llama", mr.llama3_files(), gated=True)
    params = {"model_id": "llmbox-sim/gated-llama"}
    assert_error(api_factory().get("/api/inspect", params=params), 403, "gated_repo")
    doc = api_factory(hf_token=GATED_TOKEN).get("/api/inspect", params=params).json()
    assert doc["repo"]["gated"] == "manual" and doc["safetensors"]["parameters"] > 0


def test_unreadable_headers_are_reported_not_fatal(api, sim):
    sim.add_repo("llmbox-sim/broken-headers", {"config.json": b'{"hidden_size": 64}', "model.safetensors": 300_000,
                                               "model-Q4_K_M.gguf": 200_000})
    r = api.get("/api/inspect", params={"model_id": "llmbox-sim/broken-headers"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["safetensors"]["error"] == "unreadable_header" and doc["architecture"] is None
    [variant] = doc["variants"]
    assert variant["header"]["error"] == "unreadable_header"
    assert (variant["quantization"], variant["quantization_source"]) == ("Q4_K_M", "file_name")
    assert doc["fit"]["fit"]["verdict"] == "unknown"


def test_dry_run_and_inspect_errors_are_clear_4xx(api, repos):
    def dry(**params):
        return api.post("/api/download-model", params={"dry_run": "true", **params})
    assert_error(dry(model_id="llmbox-sim/not-there"), 404, "repo_not_found")
    assert_error(dry(model_id=mr.QWEN3_GGUF, include="*.nothing"), 404, "no_matching_files")
    assert_error(dry(model_id=mr.QWEN3_GGUF, revision="no-such-branch"), 404, "revision_not_found")
    assert_error(api.get("/api/inspect", params={"model_id": "../etc"}), 422, "invalid_model_id")
    assert_error(api.get("/api/fit", params={"model_id": mr.QWEN25, "gpu_memory_gb": "-1"}), 422)
    assert_error(api.post("/api/download-model", params={"catalog_id": "Bad Id!"}), 422)
    assert api.get("/api/jobs").json() == []


def test_dry_run_disk_verdict_follows_the_reserve(api_factory, repos):
    api = api_factory(disk_reserve_mb=1 << 40)   # a reserve no disk can hold
    r = api.post("/api/download-model", params={"model_id": mr.LLAMA3, "dry_run": "true"})
    assert r.status_code == 200, r.text
    disk = r.json()["disk"]
    assert disk["verdict"] == "does_not_fit" and disk["available_bytes"] == 0
    assert disk["reserve_bytes"] == 1 << 60 and disk["bytes_to_fetch"] > 0
    # The real request is refused the same way, and nothing was queued by the dry run.
    assert_error(api.post("/api/download-model", params={"model_id": mr.LLAMA3}), 507, "insufficient_storage")
