"""Catalog (CATALOG_FILE, download by catalog_id) and the update check after a branch moves."""
from __future__ import annotations

import json

import pytest

from api import create_app
from api.inspect.catalog import CatalogError, load_catalog
from api.routes import inspect_schemas as schemas
from api.testing.hubsim import model_repos as mr
from api.testing.hubsim.faults import Fault

from ._dl import assert_error, start, wait_complete
from .conftest import make_settings

GiB = 1 << 30
UPD = "llmbox-sim/Qwen2.5-7B-Instruct-updates"


@pytest.fixture(scope="module")
def repos(sim):
    return mr.install(sim)


def test_default_catalog_has_the_three_qwen3_variants():
    entries = {e.id: e for e in load_catalog(None)}
    qwen3 = [e for e in entries.values() if e.model_id.endswith("Qwen3-8B-GGUF")]
    assert sorted(e.include[0] for e in qwen3) == ["Qwen3-8B-IQ4_XS.gguf", "Qwen3-8B-Q4_K_M.gguf",
                                                   "Qwen3-8B-Q5_K_M.gguf"]
    assert len(entries) >= 6 and any(e.recommended for e in entries.values())


@pytest.mark.parametrize("text, line, words", [
    ("- id: ok\n  model_id: org/x\n- id: second\n  model_id: 'not a repo'\n", 4, "model_id"),
    ("- id: ok\n  model_id: org/x\n  colour: red\n", 3, "unknown field 'colour'"),
    ('[{"id": "a", "model_id": "o/x"},\n {"id": "a", "model_id": "o/y"}]', 2, "already used on line 1"),
    ("- id: ok\n  model_id: [unclosed\n", 3, "expected"),
])
def test_bad_catalog_stops_start_up_naming_the_line(tmp_path, sim, text, line, words):
    bad = tmp_path / "catalog.yaml"
    bad.write_text(text)
    with pytest.raises(CatalogError) as err:
        create_app(make_settings(tmp_path, sim, catalog_file=bad))
    assert f"{bad} line {line}:" in str(err.value) and words in str(err.value)


def test_python_m_api_refuses_to_start_with_a_bad_catalog(tmp_path):
    import os
    import subprocess
    import sys
    bad = tmp_path / "catalog.yaml"
    bad.write_text("- id: fine\n  model_id: org/fine\n- id: broken\n  model_id: org/x\n  recommended: perhaps\n")
    env = {**os.environ, "PROXY_API_KEY": "k" * 32, "CATALOG_FILE": str(bad), "ENV_FILE": str(tmp_path / "none.env"),
           "MODELS_DIR": str(tmp_path / "m"), "STATE_DB": str(tmp_path / "s.db"), "API_PORT": "9"}
    p = subprocess.run([sys.executable, "-m", "api"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip() == (f"llm-box admin API: cannot start: CATALOG_FILE {bad} line 5: "
                                "recommended must be true or false.")


def test_catalog_lists_sizes_fit_flags_and_downloads_by_id(api_factory, sim, repos, tmp_path):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"entries": [
        {"id": f"qwen3-{q.lower()}", "model_id": mr.QWEN3_GGUF, "include": f"Qwen3-8B-{q}.gguf",
         "recommended": q == "Q4_K_M"} for q in ("Q4_K_M", "Q5_K_M", "IQ4_XS")] + [
        {"id": "qwen2.5-7b", "model_id": mr.QWEN25, "description": "four shards"}]}, indent=1))
    (tmp_path / "box.env").write_text(f"DEFAULT_MODEL={mr.QWEN25}\n")
    api = api_factory(catalog_file=catalog, gpu_memory_utilization=1.0)
    gpu = (1024 << 20) + 147456 * 40960 + 503552   # Q4_K_M fits exactly at full context
    answer = api.get("/api/catalog", params={"gpu_memory_gb": gpu / GiB}).json()
    schemas.Catalog.model_validate(answer)
    rows = answer["entries"]
    by_id = {r["id"]: r for r in rows}
    assert list(by_id) == ["qwen3-q4_k_m", "qwen3-q5_k_m", "qwen3-iq4_xs", "qwen2.5-7b"]
    assert by_id["qwen3-q4_k_m"]["size_bytes"] == sim.file_info(mr.QWEN3_GGUF, "Qwen3-8B-Q4_K_M.gguf")["size"]
    assert by_id["qwen3-q4_k_m"]["fit"]["verdict"] == "fits"
    assert by_id["qwen3-q5_k_m"]["fit"]["verdict"] == "fits_with_max_model_len"
    assert by_id["qwen2.5-7b"]["active"] is True and by_id["qwen3-q4_k_m"]["active"] is False
    assert not any(r["downloaded"] for r in rows)

    r = api.post("/api/download-model", params={"catalog_id": "qwen3-iq4_xs"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["model_id"] == mr.QWEN3_GGUF
    wait_complete(api, job["job_id"])
    rows = {r["id"]: r for r in api.get("/api/catalog").json()["entries"]}
    assert rows["qwen3-iq4_xs"]["downloaded"] is True and rows["qwen3-q4_k_m"]["downloaded"] is False
    assert_error(api.post("/api/download-model", params={"catalog_id": "nope"}), 404, "catalog_entry_not_found")
    assert_error(api.post("/api/download-model", params={"catalog_id": "qwen3-iq4_xs", "model_id": mr.LLAMA3}),
                 422, "catalog_conflict")


def test_update_check_after_the_branch_moves(api, sim, repos):
    first = mr.add_qwen25(sim, UPD)
    wait_complete(api, start(api, UPD)["job_id"])
    rows = api.get("/api/models/updates").json()["models"]
    assert [(r["model_id"], r["status"], r["commit"]) for r in rows] == [(UPD, "up_to_date", first)]

    moved = mr.move_branch(sim, UPD)
    r = api.get("/api/models/updates")
    assert r.status_code == 200, r.text
    schemas.Updates.model_validate(r.json())
    row = r.json()["models"][0]
    changed = ["config.json", "model-00004-of-00004.safetensors"]
    assert row["status"] == "update_available" and row["hub_commit"] == moved != first
    assert row["changed"] == changed and row["added"] == [] and row["removed"] == []
    assert row["bytes_to_fetch"] == sum(sim.file_info(UPD, p)["size"] for p in changed)
    assert r.json()["updates_available"] == 1

    sim.set_faults(Fault(repo=UPD, on="api", status=503))
    row = api.get("/api/models/updates").json()["models"][0]
    assert row["status"] == "unknown" and row["error"] == "hub_unreachable"


def test_update_check_of_a_model_fetched_with_hf_download(api, sim):
    from huggingface_hub import snapshot_download
    repo = "llmbox-sim/Qwen2.5-7B-Instruct-hf-cli"
    mr.add_qwen25(sim, repo)
    snapshot_download(repo, cache_dir=api.settings.hf_cache, endpoint=sim.url, allow_patterns=["*.json", "*.safetensors"])
    [row] = api.get("/api/models/updates").json()["models"]
    assert (row["model_id"], row["status"]) == (repo, "up_to_date")
    mr.move_branch(sim, repo)
    [row] = api.get("/api/models/updates").json()["models"]
    assert row["status"] == "update_available" and row["added"] == []   # no job: the selection is unknown
    assert row["changed"] == ["config.json", "model-00004-of-00004.safetensors"]
