"""Serve profiles and switches per GGUF variant (`model_id:Q4_K_M`), through real HTTP, the Hub
simulator, real .env and profiles files, and a REAL Docker engine running docker-compose.yml's own
vllm command in the fake vLLM image (it resolves `repo_id:quant_type` in the cache offline and
serves the words it was started with on /args)."""
from __future__ import annotations

import json

import pytest
import yaml

from api import envfile
from api.testing.hubsim import model_repos as mr

from .servers import wait_until
from .test_models_api import assert_error, download, wait_job
from .test_serve_profiles import get, served, uid_repo, vbox  # noqa: F401 - vbox is a fixture

try:
    from tests import docker_support as ds
except ImportError:  # pragma: no cover
    import docker_support as ds

pytestmark = pytest.mark.timeout(180)
Q4, Q8, BF16 = "Qwen3-0.6B-Q4_K_M.gguf", "Qwen3-0.6B-Q8_0.gguf", "Qwen3-0.6B-BF16-0000{}-of-00002.gguf"
GGUF_FILES = {"README.md": b"# GGUF", Q4: 40_000, Q8: 60_000, BF16.format(1): 30_000, BF16.format(2): 30_000}
BASE_FILES = {"config.json": b'{"model_type": "qwen3"}', "tokenizer.json": b"{}"}
VARIANT_PROFILE = {"max-model-len": 8192, "enforce-eager": True}   # plus the base tokenizer


def gguf_repo(api, sim, include: str = "*Q4_K_M.gguf") -> str:
    repo = uid_repo("Qwen3-0.6B-GGUF")
    download(api, sim, repo, GGUF_FILES, include=include)
    return repo


def base_repo(api, sim) -> str:
    base = uid_repo("Qwen3-0.6B")
    download(api, sim, base, BASE_FILES)
    return base


def switch(api, timeout: float = 60, **params) -> dict:
    r = api.put("/api/active-model", params=params)
    assert r.status_code == 202, r.text
    return wait_job(api, r.json()["job_id"], timeout)


def env_of(api) -> dict:
    path = api.settings.env_file
    return {k: envfile.read_value(path, k) for k in (envfile.DEFAULT_KEY, envfile.VARIANT_KEY, envfile.ARGS_KEY)}


# --------------------------------------------------------------------------- profiles per variant
def test_variant_profile_falls_back_to_the_repo_and_names_its_key(api):
    repo = uid_repo("Qwen3-8B-GGUF")
    path = api.settings.serve_profiles_file
    assert api.put("/api/models/profile", params={"model_id": repo},
                   json={"args": {"max-model-len": 4096}}).status_code == 200
    r = api.get("/api/models/profile", params={"model_id": repo, "variant": "Q4_K_M"})
    assert r.status_code == 200 and r.json()["args"] == {"max-model-len": 4096}, r.text
    assert r.json()["profile_key"] == repo and r.json()["variant"] == "Q4_K_M"

    r = api.put("/api/models/profile", params={"model_id": repo, "variant": "Q4_K_M"},
                json={"args": {"tokenizer": "Qwen/Qwen3-8B", "max-model-len": 32768}})
    assert r.status_code == 200, r.text
    assert r.json()["command_line"] == "--max-model-len 32768 --tokenizer Qwen/Qwen3-8B"
    assert r.json()["served_model_names"] == ["default", repo]
    on_disk = yaml.safe_load(path.read_text())["profiles"]
    assert on_disk[f"{repo}:Q4_K_M"] == {"max-model-len": 32768, "tokenizer": "Qwen/Qwen3-8B"}
    assert on_disk[repo] == {"max-model-len": 4096}   # the repo's own profile is kept
    got = api.get("/api/models/profile", params={"model_id": repo, "variant": "Q4_K_M"}).json()
    assert got["profile_key"] == f"{repo}:Q4_K_M" and got["args"]["tokenizer"] == "Qwen/Qwen3-8B"
    assert api.get("/api/models/profile", params={"model_id": repo}).json()["args"] == {"max-model-len": 4096}

    # Refusals change nothing: a bad variant name, a tokenizer that is a path or not a repo id.
    saved = path.read_bytes()
    for bad in ("../x", "Q4_K_M:evil", "Q4 K", "Q4__K", "-Q4", "x" * 65, "Q4.gguf"):
        for method in ("get", "put"):
            r = getattr(api, method)("/api/models/profile", params={"model_id": repo, "variant": bad},
                                     **({"json": {"args": {}}} if method == "put" else {}))
            assert_error(r, 422, "invalid_variant")
    for tok in ("/models/hub/tok", "../Qwen", "Qwen/Qwen3 --trust-remote-code", 7):
        r = api.put("/api/models/profile", params={"model_id": repo, "variant": "Q8_0"},
                    json={"args": {"tokenizer": tok}})
        assert "tokenizer" in assert_error(r, 422, "invalid_profile")["detail"]
    assert path.read_bytes() == saved

    # {} removes the variant's profile only; the answer is what now applies (the repo's).
    r = api.put("/api/models/profile", params={"model_id": repo, "variant": "Q4_K_M"}, json={"args": {}})
    assert r.json()["profile_key"] == repo and r.json()["args"] == {"max-model-len": 4096}
    assert set(yaml.safe_load(path.read_text())["profiles"]) == {repo}


def test_switch_to_a_variant_writes_env_and_a_plain_switch_clears_it(api, sim):
    repo, base = gguf_repo(api, sim), base_repo(api, sim)
    api.put("/api/models/profile", params={"model_id": repo, "variant": "Q4_K_M"},
            json={"args": {**VARIANT_PROFILE, "tokenizer": base}})
    sw = switch(api, model_id=repo, variant="Q4_K_M", restart="false")
    assert sw["status"] == "complete", sw
    assert sw["result"]["variant"] == "Q4_K_M" and sw["result"]["served_model_names"] == ["default", repo]
    env = env_of(api)
    assert env[envfile.DEFAULT_KEY] == repo and env[envfile.VARIANT_KEY] == "Q4_K_M"
    assert env[envfile.ARGS_KEY] == f"--enforce-eager --max-model-len 8192 --tokenizer {base}"
    active = api.get("/api/active-model").json()
    assert active["model_id"] == repo and active["variant"] == "Q4_K_M"
    # The repo id alone is still what every other part compares with: the models list marks it active.
    assert [m["active"] for m in api.get("/api/models").json() if m["model_id"] == repo] == [True]

    # Body fields work as the query does; a plain switch empties the variant key.
    r = api.put("/api/active-model", json={"model_id": base, "restart": False})
    assert r.status_code == 202, r.text
    sw = wait_job(api, r.json()["job_id"])
    assert sw["status"] == "complete" and sw["result"]["previous_variant"] == "Q4_K_M", sw
    assert env_of(api)[envfile.VARIANT_KEY] == "" and api.get("/api/active-model").json()["variant"] is None


def test_switch_refuses_what_vllm_could_not_serve_and_changes_nothing(api, sim):
    repo = gguf_repo(api, sim)
    before = api.settings.env_file.read_bytes()
    refusals = [({"variant": "Q8_0"}, 409, "variant_not_downloaded"),      # on the Hub, not in the cache
                ({"variant": "IQ2_XS"}, 409, "variant_not_downloaded"),
                ({"variant": "Q4_K_M;id"}, 422, "invalid_variant"),
                ({"variant": "../../etc"}, 422, "invalid_variant")]
    for params, status, code in refusals:
        assert_error(api.put("/api/active-model", params={"model_id": repo, "restart": "false", **params}),
                     status, code)
    assert_error(api.put("/api/active-model", json={"model_id": repo, "variant": "Q4 K M"}), 422, "invalid_variant")
    # GGUF files only: vLLM cannot serve the repo as a whole, a variant must be named.
    r = api.put("/api/active-model", params={"model_id": repo, "restart": "false"})
    assert "Q4_K_M" in assert_error(r, 409, "variant_required")["detail"]
    # A split variant: vLLM loads single-file GGUF only.
    download(api, sim, repo, GGUF_FILES, include="*BF16*")
    r = api.put("/api/active-model", params={"model_id": repo, "variant": "BF16", "restart": "false"})
    assert "single-file" in assert_error(r, 409, "variant_multi_file")["detail"]
    # The profile's tokenizer must be in the cache too (vLLM runs offline).
    api.put("/api/models/profile", params={"model_id": repo, "variant": "Q4_K_M"},
            json={"args": {"tokenizer": uid_repo("not-here")}})
    r = api.put("/api/active-model", params={"model_id": repo, "variant": "Q4_K_M", "restart": "false"})
    assert_error(r, 409, "tokenizer_not_downloaded")
    assert api.settings.env_file.read_bytes() == before
    assert api.get("/api/jobs", params={"kind": "switch"}).json() == []


def test_catalog_and_fit_follow_the_variant(api_factory, sim, tmp_path):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"entries": [
        {"id": q.lower(), "model_id": mr.QWEN3_GGUF, "include": f"Qwen3-8B-{q}.gguf"} for q in ("Q4_K_M", "Q5_K_M")]}))
    api = api_factory(catalog_file=catalog)
    download(api, sim, mr.QWEN3_GGUF, mr.qwen3_gguf_files(), include="Qwen3-8B-Q4_K_M.gguf")

    def active() -> dict:
        return {r["id"]: r["active"] for r in api.get("/api/catalog").json()["entries"]}

    # A switch refuses a GGUF-only repo without a variant (variant_required); set by hand in .env,
    # the whole repo counts as served.
    envfile.set_values(api.settings.env_file, {envfile.DEFAULT_KEY: mr.QWEN3_GGUF})
    assert active() == {"q4_k_m": True, "q5_k_m": True}
    assert switch(api, model_id=mr.QWEN3_GGUF, variant="Q4_K_M", restart="false")["status"] == "complete"
    assert active() == {"q4_k_m": True, "q5_k_m": False}

    # The fit of a variant uses the variant's profile; the other variants keep the repo's.
    api.put("/api/models/profile", params={"model_id": mr.QWEN3_GGUF}, json={"args": {"max-model-len": 8192}})
    api.put("/api/models/profile", params={"model_id": mr.QWEN3_GGUF, "variant": "Q4_K_M"},
            json={"args": {"max-model-len": 4096}})
    fit = api.get("/api/fit", params={"model_id": mr.QWEN3_GGUF, "variant": "Q4_K_M", "gpu_memory_gb": 24}).json()
    assert fit["fit"]["serve_profile"] == {"max-model-len": 4096} and fit["fit"]["max_model_len"] == 4096, fit
    fit = api.get("/api/fit", params={"model_id": mr.QWEN3_GGUF, "variant": "Q5_K_M", "gpu_memory_gb": 24}).json()
    assert fit["fit"]["serve_profile"] == {"max-model-len": 8192}, fit


# --------------------------------------------------------------------------- real containers
def test_variant_served_with_its_profile_then_back_to_a_plain_repo(vbox, sim):
    api = vbox.start()
    repo, base = gguf_repo(api, sim), base_repo(api, sim)
    vbox.run(base, api.settings.models_dir)
    ds.wait_healthy(vbox.name, 30)
    api.put("/api/models/profile", params={"model_id": repo}, json={"args": {"max-model-len": 2048}})
    api.put("/api/models/profile", params={"model_id": repo, "variant": "Q4_K_M"},
            json={"args": {**VARIANT_PROFILE, "tokenizer": base}})

    sw = switch(api, model_id=repo, variant="Q4_K_M")
    assert sw["status"] == "complete", sw
    args = get(vbox.port, "/args").json()
    # vLLM's GGUF form; the served names stay the alias and the repo id.
    assert args[:5] == ["serve", f"{repo}:Q4_K_M", "--served-model-name", "chat", repo], args
    flags = args[5:]
    assert flags[flags.index("--tokenizer") + 1] == base and "--enforce-eager" in flags
    assert flags[flags.index("--max-model-len") + 1] == "8192"   # the variant's profile, not the repo's
    assert served(vbox.port) == ["chat", repo]
    env = dict(e.split("=", 1) for e in vbox.docker.api.inspect_container(vbox.name)["Config"]["Env"])
    assert env[envfile.VARIANT_KEY] == "Q4_K_M" and env_of(api)[envfile.VARIANT_KEY] == "Q4_K_M"

    sw = switch(api, model_id=base)
    assert sw["status"] == "complete", sw
    assert get(vbox.port, "/args").json()[:2] == ["serve", base]
    env = dict(e.split("=", 1) for e in vbox.docker.api.inspect_container(vbox.name)["Config"]["Env"])
    assert env[envfile.VARIANT_KEY] == "" and env_of(api)[envfile.VARIANT_KEY] == ""

    # A download of one variant with activate=true serves that variant (with the repo's profile).
    r = api.post("/api/download-model", params={"model_id": repo, "include": Q8, "activate": "true"})
    assert r.status_code == 202, r.text
    done = wait_job(api, r.json()["job_id"])
    sw = wait_job(api, wait_until(lambda: (wait_job(api, done["job_id"])["result"] or {}).get("switch_job_id"), 30,
                                  message="the switch job of activate=true"))
    assert sw["status"] == "complete" and sw["result"]["variant"] == "Q8_0", sw
    args = get(vbox.port, "/args").json()
    assert args[1] == f"{repo}:Q8_0" and args[args.index("--max-model-len") + 1] == "2048", args


def test_failed_switch_rolls_the_variant_back_with_the_model(vbox, sim):
    """The probe lacks the inference key: vLLM answers 401, the switch rolls back .env byte for byte
    (the variant key included) and the container serving the variant comes back."""
    api = vbox.start(inference_api_key=None, switch_timeout=6)
    repo, base = gguf_repo(api, sim), base_repo(api, sim)
    envfile.set_values(api.settings.env_file, {envfile.DEFAULT_KEY: repo, envfile.VARIANT_KEY: "Q4_K_M"})
    vbox.run(repo, api.settings.models_dir, DEFAULT_MODEL_VARIANT="Q4_K_M")
    ds.wait_healthy(vbox.name, 30)
    assert get(vbox.port, "/args").json()[1] == f"{repo}:Q4_K_M"
    before = api.settings.env_file.read_bytes()

    sw = switch(api, model_id=base)
    assert sw["status"] == "failed" and sw["error_code"] == "switch_failed", sw
    assert api.settings.env_file.read_bytes() == before
    assert env_of(api)[envfile.VARIANT_KEY] == "Q4_K_M"
    wait_until(lambda: (get(vbox.port, "/args") or None) and get(vbox.port, "/args").json()[1] == f"{repo}:Q4_K_M",
               30, message="the variant served again")
