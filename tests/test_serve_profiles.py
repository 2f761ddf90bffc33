"""Serve profiles, the stable alias and revision-correct switches, through real HTTP and a REAL
Docker engine running docker-compose.yml's own vllm command in the fake vLLM image (it serves the
arguments it was started with on /args and its served names on /v1/models, and resolves the model
in the cache offline as vLLM does)."""
from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import docker.errors
import httpx
import pytest
import yaml

from api import envfile

from .servers import wait_until
from .test_models_api import FILES, assert_error, download, wait_job

try:
    from tests import docker_support as ds
except ImportError:  # pragma: no cover
    import docker_support as ds

pytestmark = pytest.mark.timeout(180)
KEY = "inference-key-" + "7" * 16


def get(port: int, path: str, key: str | None = KEY) -> httpx.Response | None:
    try:
        with httpx.Client(trust_env=False, timeout=3) as http:
            return http.get(f"http://127.0.0.1:{port}{path}",
                            headers={"Authorization": f"Bearer {key}"} if key else {})
    except httpx.HTTPError:
        return None


def served(port: int) -> list[str] | None:
    r = get(port, "/v1/models")
    return [m["id"] for m in r.json()["data"]] if r is not None and r.status_code == 200 else None


def uid_repo(prefix: str) -> str:
    return f"org/{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- the profile API
def test_profile_put_get_and_refusals(api):
    model = uid_repo("big")
    path = api.settings.serve_profiles_file
    r = api.get("/api/models/profile", params={"model_id": model})
    assert r.status_code == 200 and r.json()["args"] == {} and r.json()["command_line"] == ""
    assert r.json()["served_model_names"] == ["default", model]

    good = {"tensor-parallel-size": 2, "--max_model_len": 32768, "dtype": "bfloat16", "enforce-eager": True,
            "enable-prefix-caching": False}
    r = api.put("/api/models/profile", params={"model_id": model}, json={"args": good})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["command_line"] == "--dtype bfloat16 --enforce-eager --max-model-len 32768 --tensor-parallel-size 2"
    on_disk = yaml.safe_load(path.read_text())["profiles"][model]
    assert on_disk["max-model-len"] == 32768 and on_disk["tensor-parallel-size"] == 2
    saved = path.read_bytes()

    bad = [({"api-key": "x"}, "INFERENCE_API_KEY"), ({"served-model-name": "x"}, "SERVED_MODEL_ALIAS"),
           ({"revision": "main"}, "revision"), ({"chat-template": "/etc/passwd"}, "not an allowed"),
           ({"max-model-len": "4096; rm -rf /"}, "integer"), ({"tensor-parallel-size": True}, "integer"),
           ({"gpu-memory-utilization": 1.5}, "number"), ({"tool-call-parser": "$(id)"}, "name"),
           ({"quantization": "awq --trust-remote-code"}, "one of")]
    for args, words in bad:
        r = api.put("/api/models/profile", params={"model_id": model}, json={"args": args})
        assert words in assert_error(r, 422, "invalid_profile")["detail"], (args, r.text)
    assert_error(api.put("/api/models/profile", params={"model_id": model}, json={"args": "--max-model-len 1"}), 422)
    assert path.read_bytes() == saved   # nothing changed by a refused profile
    assert_error(api.put("/api/models/profile", params={"model_id": "../etc"}, json={"args": {}}), 422,
                 "invalid_model_id")
    assert api.get("/api/models/profile", params={"model_id": model}).json()["args"] == on_disk

    # {} removes the profile; other models' profiles stay
    other = uid_repo("small")
    api.put("/api/models/profile", params={"model_id": other}, json={"args": {"max-model-len": 4096}})
    assert_error(api.put("/api/models/profile", json={"model_id": other, "args": {}}), 422, "invalid_model_id")
    assert api.put("/api/models/profile", params={"model_id": model}, json={"args": {}}).json()["args"] == {}
    assert set(yaml.safe_load(path.read_text())["profiles"]) == {other}


def test_switch_refuses_a_hand_edited_profile_with_a_bad_flag(api, sim):
    model = uid_repo("hand")
    download(api, sim, model)
    env_before = api.settings.env_file.read_bytes()
    api.settings.serve_profiles_file.write_text(
        yaml.safe_dump({"profiles": {model: {"max-model-len": 4096, "worker-extension-cls": "evil.Module"}}}))
    r = api.put("/api/active-model", params={"model_id": model, "restart": "false"})
    assert "worker-extension-cls" in assert_error(r, 422, "invalid_profile")["detail"]
    assert api.settings.env_file.read_bytes() == env_before


def test_switch_without_restart_writes_model_and_args_together(api, sim):
    model = uid_repo("args")
    download(api, sim, model)
    api.put("/api/models/profile", params={"model_id": model}, json={"args": {"max-model-len": 8192}})
    sw = wait_job(api, api.put("/api/active-model", params={"model_id": model, "restart": "false"}).json()["job_id"])
    assert sw["status"] == "complete", sw
    text = api.settings.env_file.read_text()
    assert f"DEFAULT_MODEL={model}\n" in text and 'INFERENCE_ARGS="--max-model-len 8192"' in text
    assert sw["result"]["served_model_names"] == ["default", model]


# --------------------------------------------------------------------------- real containers
@pytest.fixture
def vbox(engine, api_factory, tmp_path, sim):
    """An API managing a fake vLLM started from docker-compose.yml's command with the cache mounted."""
    uid = uuid.uuid4().hex[:8]
    name, port = f"llmbox-serve-{uid}", ds.free_port()

    def start(**over):
        return api_factory(**{"docker_host": None, "inference_container": name, "managed_containers": name,
                              "inference_models_url": f"http://127.0.0.1:{port}/v1/models", "switch_timeout": 30,
                              "inference_api_key": KEY, "served_model_alias": "chat", **over})

    def run(model: str, models_dir, **env):
        return ds.run_vllm_container(name, model=model, port=port, models_dir=models_dir, run_id=uid,
                                     env={"VLLM_API_KEY": KEY, "SERVED_MODEL_ALIAS": "chat", **env})

    try:
        yield SimpleNamespace(name=name, port=port, uid=uid, start=start, run=run, docker=engine)
    finally:
        ds.remove_test_containers(uid)
        for c in engine.containers.list(all=True, filters={"name": name}):
            try:
                c.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass


def test_switch_applies_profile_alias_and_the_downloaded_revision(vbox, sim):
    api = vbox.start()
    small, big = uid_repo("small"), uid_repo("big")
    download(api, sim, small)
    # `big` exists on the Hub only at a tag: the cache gets refs/v2, no refs/main.
    commit = sim.add_repo(big, dict(FILES), revision="v2")
    j = api.post("/api/download-model", params={"model_id": big, "revision": "v2"}).json()
    assert wait_job(api, j["job_id"])["status"] == "complete"
    hub = api.settings.hf_cache / ("models--" + big.replace("/", "--"))
    assert (hub / "refs" / "v2").read_text() == commit and not (hub / "refs" / "main").exists()

    vbox.run(small, api.settings.models_dir)
    ds.wait_healthy(vbox.name, 30)
    assert served(vbox.port) == ["chat", small]
    assert get(vbox.port, "/v1/models", key=None).status_code == 401   # vLLM's --api-key is on

    profile = {"tensor-parallel-size": 2, "max-model-len": 32768, "enforce-eager": True}
    assert api.put("/api/models/profile", params={"model_id": big}, json={"args": profile}).status_code == 200
    t0 = time.monotonic()
    sw = wait_job(api, api.put("/api/active-model", params={"model_id": big}).json()["job_id"], 60)
    assert sw["status"] == "complete", sw
    print(f"\nPROFILE SWITCH: {time.monotonic() - t0:.2f}s")

    # Clients keep calling "chat"; the repo id is served too.
    assert served(vbox.port) == ["chat", big]
    args = get(vbox.port, "/args").json()
    assert args[:5] == ["serve", big, "--served-model-name", "chat", big]
    flags = args[5:]
    assert flags[flags.index("--max-model-len") + 1] == "32768"
    assert flags[flags.index("--tensor-parallel-size") + 1] == "2" and "--enforce-eager" in flags
    assert flags[flags.index("--revision") + 1] == commit
    assert flags[flags.index("--tokenizer-revision") + 1] == commit
    env_text = api.settings.env_file.read_text()
    assert f"DEFAULT_MODEL={big}\n" in env_text and f"--revision {commit}" in env_text
    assert sw["result"]["served_model_names"] == ["chat", big]
    active = api.get("/api/active-model").json()
    assert active["served_model_alias"] == "chat" and f"--revision {commit}" in active["inference_args"]

    # Back to the small model: its (empty) profile replaces the big one's flags.
    sw = wait_job(api, api.put("/api/active-model", params={"model_id": small}).json()["job_id"], 60)
    assert sw["status"] == "complete", sw
    assert get(vbox.port, "/args").json()[5:] == ["--host", "0.0.0.0", "--port", str(vbox.port)]
    assert envfile.read_value(api.settings.env_file, "INFERENCE_ARGS") == ""


def test_probe_without_the_inference_key_never_sees_the_model(vbox, sim, api_factory):
    """The same switch with INFERENCE_API_KEY unset: vLLM answers 401, the switch rolls back."""
    api = vbox.start(inference_api_key=None, switch_timeout=6)
    a, b = uid_repo("a"), uid_repo("b")
    download(api, sim, a)
    download(api, sim, b)
    vbox.run(a, api.settings.models_dir)
    ds.wait_healthy(vbox.name, 30)
    env_before = api.settings.env_file.read_bytes()
    sw = wait_job(api, api.put("/api/active-model", params={"model_id": b}).json()["job_id"], 60)
    assert sw["status"] == "failed" and sw["error_code"] == "switch_failed", sw
    assert "401" in sw["error"] and "INFERENCE_API_KEY" in sw["error"]
    assert api.settings.env_file.read_bytes() == env_before
    wait_until(lambda: served(vbox.port) == ["chat", a], 30, message="old model back")


def test_first_deploy_waits_for_the_model_instead_of_restart_looping(vbox, tmp_path):
    models = tmp_path / "empty-models"
    models.mkdir()
    model = uid_repo("first")
    c = vbox.run(model, models)
    wait_until(lambda: b"waiting for" in c.logs(), 20, message="waiting message")
    info = vbox.docker.api.inspect_container(vbox.name)
    assert info["State"]["Running"] and info["RestartCount"] == 0
    assert served(vbox.port) is None
    snap = models / "hub" / ("models--" + model.replace("/", "--"))
    (snap / "snapshots" / ("c" * 40)).mkdir(parents=True)
    (snap / "refs").mkdir()
    (snap / "refs" / "main").write_text("c" * 40)
    wait_until(lambda: served(vbox.port) == ["chat", model], 30, message="served once downloaded")
    assert vbox.docker.api.inspect_container(vbox.name)["RestartCount"] == 0


def test_unwritable_or_broken_profiles_file_gives_coded_errors(api_factory, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    api = api_factory(serve_profiles_file=blocker / "serve-profiles.yaml")
    r = api.put("/api/models/profile", params={"model_id": "org/m"}, json={"args": {"max-model-len": 4096}})
    assert_error(r, 500, "profiles_unwritable")
    broken = tmp_path / "broken.yaml"
    broken.write_text("profiles: [unclosed\n")
    api = api_factory(serve_profiles_file=broken)
    assert_error(api.get("/api/models/profile", params={"model_id": "org/m"}), 500, "profiles_invalid")
    assert broken.read_text() == "profiles: [unclosed\n"
