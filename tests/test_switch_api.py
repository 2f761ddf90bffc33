"""The health-gated model switch and the container routes through real HTTP and a REAL Docker engine.

Each test gets its own fake inference container (host network, 127.0.0.1:<free port>, a
HEALTHCHECK, labels, a restart policy) and an API that manages it. Under CI a missing engine is
a failure, never a skip.
"""
from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

import docker.errors
import httpx
import pytest

from .servers import wait_until
from .test_models_api import (FINAL, assert_error, download, folder_of, job, start_download,
                              wait_job)

try:
    from tests import docker_support as ds
except ImportError:  # pragma: no cover
    import docker_support as ds

pytestmark = pytest.mark.timeout(180)

# Comments, quoting, `export`, a commented-out DEFAULT_MODEL and no final newline: after a switch
# only the value bytes of the live DEFAULT_MODEL line may differ.
ENV_TEMPLATE = (
    "# LLM box settings (edited by hand)\n"
    "PROXY_API_KEY=change-me   # nginx uses it too\n"
    'export HF_TOKEN="hf_not_a_real_token"\n'
    "\n"
    "# DEFAULT_MODEL=org/commented-out\n"
    "DEFAULT_MODEL={model}\n"
    "VLLM_ARGS='--max-model-len 4096 --gpu-memory-utilization 0.9'\n"
    "API_PORT=8787"
)


def _remove_all(client, run_id: str, name: str) -> None:
    ds.remove_test_containers(run_id)
    # the name filter is a substring match: it also finds <name>-backup-*
    for c in client.containers.list(all=True, filters={"name": name}):
        try:
            c.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def box(engine, api_factory, tmp_path):
    uid = uuid.uuid4().hex[:8]
    name = f"llmbox-switch-{uid}"
    port = ds.free_port()
    old = f"org/old-{uid}"
    env_file = tmp_path / "box.env"
    env_bytes = ENV_TEMPLATE.format(model=old).encode()
    env_file.write_bytes(env_bytes)
    try:
        ds.run_test_container(name, model=old, port=port, run_id=uid,
                              env={"EXTRA_VAR": "keep-me", "VLLM_ARGS": "--max-model-len 4096"},
                              labels={"com.example.role": "inference"},
                              restart_policy={"Name": "unless-stopped"})
        ds.wait_healthy(name)
        api = api_factory(docker_host=None, inference_container=name, managed_containers=name,
                          inference_models_url=f"http://127.0.0.1:{port}/v1/models", switch_timeout=30)
        assert api.settings.env_file == env_file
        yield SimpleNamespace(api=api, name=name, port=port, old=old, uid=uid, env_file=env_file,
                              env_bytes=env_bytes, docker=engine, dapi=engine.api)
    finally:
        _remove_all(engine, uid, name)


def served(port: int) -> list[str] | None:
    try:
        with httpx.Client(trust_env=False, timeout=2) as http:
            r = http.get(f"http://127.0.0.1:{port}/v1/models")
            return [m["id"] for m in r.json()["data"]] if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def leftovers(box) -> list[str]:
    names = [c.name for c in box.docker.containers.list(all=True, filters={"name": box.name})]
    return sorted(n for n in names if n != box.name)


def env_dict(info: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in info["Config"]["Env"])


def uid_model(box, prefix: str) -> str:
    return f"org/{prefix}-{box.uid}-{uuid.uuid4().hex[:4]}"


# --------------------------------------------------------------------------- the switch
def test_switch_recreates_container_with_new_model(box, sim):
    api = box.api
    new = uid_model(box, "new")
    download(api, sim, new)
    before = box.dapi.inspect_container(box.name)
    assert served(box.port) == [box.old]

    t0 = time.monotonic()
    r = api.put("/api/active-model", params={"model_id": new})
    assert r.status_code == 202, r.text
    sw = r.json()
    assert sw["kind"] == "switch" and sw["model_id"] == new and sw["status"] in ("queued", "running")
    wait_until(lambda: served(box.port) == [new], 30, interval=0.02, message="new model served")
    t_served = time.monotonic() - t0
    sw = wait_job(api, sw["job_id"], 40)
    t_done = time.monotonic() - t0
    print(f"\nSWITCH TIMING: PUT -> new model served at /v1/models: {t_served:.2f}s; "
          f"PUT -> switch job complete (health-gated): {t_done:.2f}s; job result seconds: "
          f"{(sw.get('result') or {}).get('seconds')}")
    assert sw["status"] == "complete", sw

    # .env: only the value of the live DEFAULT_MODEL line changed
    expected = box.env_bytes.replace(f"DEFAULT_MODEL={box.old}\n".encode(), f"DEFAULT_MODEL={new}\n".encode())
    assert expected != box.env_bytes
    assert box.env_file.read_bytes() == expected

    after = box.dapi.inspect_container(box.name)
    assert after["Id"] != before["Id"]
    assert after["State"]["Running"] and after["State"]["Health"]["Status"] == "healthy"
    assert after["Config"]["Image"] == before["Config"]["Image"] == ds.IMAGE_TAG
    assert after["Image"] == before["Image"]
    assert after["Config"]["Labels"] == before["Config"]["Labels"]
    assert after["Config"]["Healthcheck"] == before["Config"]["Healthcheck"]
    assert after["Config"]["Entrypoint"] == before["Config"]["Entrypoint"]
    assert after["HostConfig"]["RestartPolicy"] == before["HostConfig"]["RestartPolicy"]
    assert after["HostConfig"]["NetworkMode"] == "host"
    old_env, new_env = env_dict(before), env_dict(after)
    assert old_env.pop("DEFAULT_MODEL") == box.old and new_env.pop("DEFAULT_MODEL") == new
    assert new_env == old_env
    assert leftovers(box) == []
    with pytest.raises(docker.errors.NotFound):
        box.dapi.inspect_container(before["Id"])
    assert served(box.port) == [new]

    active = api.get("/api/active-model").json()
    assert active["model_id"] == new and active["env_file"] == str(box.env_file)
    assert active["container"]["name"] == box.name and active["container"]["status"] == "running"
    listed = {m["model_id"]: m for m in api.get("/api/models").json()}
    assert listed[new]["active"] is True

    res = sw["result"]
    assert res["previous_model"] == box.old and res["model_id"] == new and res["restart"] is True
    names = [s["step"] for s in res["steps"]]
    for wanted in ("env_rewritten", "old_stopped", "new_started", "new_healthy", "backup_removed", "done"):
        assert wanted in names, names
    assert names.index("env_rewritten") < names.index("new_healthy") < names.index("done")
    assert all(isinstance(s["at_seconds"], (int, float)) for s in res["steps"])
    assert after["Id"].startswith(res["container"]["new_container_id"][:12])


def test_broken_model_rolls_back(box, sim):
    api = box.api
    broken = uid_model(box, "broken-model")
    download(api, sim, broken)
    before = box.dapi.inspect_container(box.name)

    r = api.put("/api/active-model", json={"model_id": broken})
    assert r.status_code == 202, r.text
    sw = wait_job(api, r.json()["job_id"], 60)
    assert sw["status"] == "failed", sw
    assert sw["error_code"] == "switch_failed" and box.old in sw["error"]
    logs = sw["result"]["logs"]
    assert any("safetensors header is corrupt" in line for line in logs), logs
    names = [s["step"] for s in sw["result"]["steps"]]
    assert "env_restored" in names and "rolled_back" in names, names

    assert box.env_file.read_bytes() == box.env_bytes
    after = ds.wait_healthy(box.name) and box.dapi.inspect_container(box.name)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert env_dict(after)["DEFAULT_MODEL"] == box.old
    assert wait_until(lambda: served(box.port) == [box.old], 20, message="old model served again")
    assert leftovers(box) == []
    assert api.get("/api/active-model").json()["model_id"] == box.old
    assert box.docker.containers.list(all=True, filters={"label": f"llmbox.test.run={box.uid}"}).__len__() == 1


def test_not_downloaded_and_restart_false(box, sim):
    api = box.api
    missing = uid_model(box, "missing")
    assert_error(api.put("/api/active-model", params={"model_id": missing}), 409, "model_not_downloaded")
    assert_error(api.put("/api/active-model", params={"model_id": "../etc/passwd"}), 422)
    assert_error(api.put("/api/active-model"), 422)
    assert box.env_file.read_bytes() == box.env_bytes

    # a paused/partial download is not "downloaded" either
    assert api.get("/api/jobs", params={"kind": "switch"}).json() == []

    new = uid_model(box, "envonly")
    download(api, sim, new)
    before = box.dapi.inspect_container(box.name)
    r = api.put("/api/active-model", params={"model_id": new, "restart": "false"})
    assert r.status_code == 202, r.text
    sw = wait_job(api, r.json()["job_id"], 20)
    assert sw["status"] == "complete", sw
    assert sw["result"]["restart"] is False and sw["result"]["previous_model"] == box.old
    assert box.env_file.read_bytes() == box.env_bytes.replace(box.old.encode(), new.encode())
    after = box.dapi.inspect_container(box.name)
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert env_dict(after)["DEFAULT_MODEL"] == box.old
    assert served(box.port) == [box.old]
    assert api.get("/api/active-model").json()["model_id"] == new


def test_concurrent_switch_requests(box, sim):
    api = box.api
    new = uid_model(box, "race")
    download(api, sim, new)
    n = 50
    barrier = threading.Barrier(n)
    results: list[tuple[int, dict]] = [None] * n  # type: ignore[list-item]

    def put(i: int) -> None:  # httpx.Client is thread-safe; its pool opens one connection each
        barrier.wait(10)
        r = api.put("/api/active-model", params={"model_id": new})
        results[i] = (r.status_code, r.json())

    threads = [threading.Thread(target=put, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(code for code, _ in results)
    assert codes.count(202) == 1, codes
    assert codes.count(409) == n - 1, codes
    for code, body in results:
        if code == 409:
            assert body["error"] == "switch_in_progress" and body["status"] == 409
    winner = next(body for code, body in results if code == 202)
    sw = wait_job(api, winner["job_id"], 40)
    assert sw["status"] == "complete", sw

    switch_jobs = api.get("/api/jobs", params={"kind": "switch"}).json()
    assert [j["job_id"] for j in switch_jobs] == [winner["job_id"]]
    text = box.env_file.read_bytes()
    assert text == box.env_bytes.replace(f"DEFAULT_MODEL={box.old}\n".encode(), f"DEFAULT_MODEL={new}\n".encode())
    assert text.count(b"\nDEFAULT_MODEL=") == 1
    assert served(box.port) == [new]
    assert leftovers(box) == []


def test_delete_waits_for_a_running_switch(box, sim):
    """Delete and switch share one lock: a delete during a switch waits, then sees the result."""
    api = box.api
    new = uid_model(box, "locked")
    download(api, sim, new)
    r = api.put("/api/active-model", params={"model_id": new})
    assert r.status_code == 202, r.text
    # the switch holds the lock from the 202 on; the delete waits for it, then finds new active
    assert_error(api.delete("/api/delete-model", params={"model_id": new}), 409, "model_active")
    assert wait_job(api, r.json()["job_id"], 40)["status"] == "complete"
    assert folder_of(api, new).is_dir()
    assert served(box.port) == [new]


def test_switch_when_container_is_missing(box, sim):
    api = box.api
    new = uid_model(box, "nocontainer")
    download(api, sim, new)
    box.dapi.remove_container(box.name, force=True, v=True)
    r = api.put("/api/active-model", params={"model_id": new})
    assert r.status_code == 202, r.text
    sw = wait_job(api, r.json()["job_id"], 30)
    assert sw["status"] == "failed" and sw["error_code"] == "container_not_found", sw
    assert "env_restored" in [s["step"] for s in sw["result"]["steps"]]
    assert box.env_file.read_bytes() == box.env_bytes
    active = api.get("/api/active-model").json()
    assert active["model_id"] == box.old and active["container"] is None
    assert api.get("/api/containers").json() == []
    assert box.docker.containers.list(all=True, filters={"name": box.name}) == []


# --------------------------------------------------------------------------- container routes
def test_container_routes(box):
    api = box.api
    other = f"llmbox-unmanaged-{box.uid}"
    other_port = ds.free_port()
    ds.run_test_container(other, model="org/unmanaged", port=other_port, run_id=box.uid)
    try:
        ds.wait_healthy(other)
        other_before = box.dapi.inspect_container(other)

        items = api.get("/api/containers")
        assert items.status_code == 200
        assert [c["name"] for c in items.json()] == [box.name]
        c = items.json()[0]
        assert set(c) >= {"name", "status", "health", "image", "started_at", "restart_count"}
        assert c["status"] == "running" and c["health"] == "healthy" and c["image"] == ds.IMAGE_TAG

        started = box.dapi.inspect_container(box.name)["State"]["StartedAt"]
        r = api.post(f"/api/containers/{box.name}/restart")
        assert r.status_code == 200, r.text
        assert r.json()["name"] == box.name and r.json()["status"] == "running"
        assert box.dapi.inspect_container(box.name)["State"]["StartedAt"] != started
        wait_until(lambda: served(box.port) == [box.old], 20, message="served after restart")

        r = api.post(f"/api/containers/{box.name}/stop")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "exited"
        assert box.dapi.inspect_container(box.name)["State"]["Running"] is False
        assert served(box.port) is None

        r = api.post(f"/api/containers/{box.name}/start")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "running"
        assert box.dapi.inspect_container(box.name)["State"]["Running"] is True
        wait_until(lambda: served(box.port) == [box.old], 20, message="served after start")

        r = api.get(f"/api/containers/{box.name}/logs", params={"tail": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["name"] == box.name
        assert 0 < len(body["lines"]) <= 5 and all(isinstance(x, str) for x in body["lines"])
        assert any("fake-inference" in x or "serving" in x for x in body["lines"]), body["lines"]
        assert_error(api.get(f"/api/containers/{box.name}/logs", params={"tail": 0}), 422)

        for method, path in (("POST", "stop"), ("POST", "restart"), ("POST", "start"), ("GET", "logs")):
            assert_error(api.request(method, f"/api/containers/{other}/{path}"), 404, "container_not_found")
        # id prefixes and near-names are not names
        assert_error(api.post(f"/api/containers/{other_before['Id'][:12]}/stop"), 404)
        assert_error(api.post(f"/api/containers/{box.name}-backup-x/stop"), 404)
        other_after = box.dapi.inspect_container(other)
        assert other_after["State"]["Running"] is True
        assert other_after["State"]["StartedAt"] == other_before["State"]["StartedAt"]
        assert served(other_port) == ["org/unmanaged"]
    finally:
        try:
            box.dapi.remove_container(other, force=True, v=True)
        except docker.errors.NotFound:
            pass


# --------------------------------------------------------------------------- no engine
def test_docker_unavailable(api_factory, sim, tmp_path):
    env_file = tmp_path / "box.env"
    env_file.write_bytes(ENV_TEMPLATE.format(model="org/old").encode())
    env_bytes = env_file.read_bytes()
    api = api_factory(docker_host="unix:///nonexistent.sock", inference_container="llmbox-nodocker")

    h = httpx.get(f"{api.base_url}/health", timeout=10)
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["docker"] == "unavailable"
    for method, path in (("GET", "/api/containers"), ("POST", "/api/containers/llmbox-nodocker/restart"),
                         ("POST", "/api/containers/llmbox-nodocker/stop"),
                         ("POST", "/api/containers/llmbox-nodocker/start"),
                         ("GET", "/api/containers/llmbox-nodocker/logs")):
        assert_error(api.request(method, path), 503, "docker_unavailable")
    # unmanaged names are still 404: the allow-list answers before the engine is asked
    assert_error(api.post("/api/containers/someone-else/stop"), 404, "container_not_found")

    # downloads still work
    repo = f"org/nodocker-{uuid.uuid4().hex[:8]}"
    download(api, sim, repo)
    assert folder_of(api, repo).is_dir()

    assert_error(api.put("/api/active-model", params={"model_id": repo}), 503, "docker_unavailable")
    assert_error(api.put("/api/active-model", params={"model_id": repo, "restart": "true"}), 503,
                 "docker_unavailable")
    assert env_file.read_bytes() == env_bytes
    assert api.get("/api/jobs", params={"kind": "switch"}).json() == []
    active = api.get("/api/active-model")
    assert active.status_code == 200
    assert active.json()["model_id"] == "org/old" and active.json()["container"] is None

    # restart=false needs no engine: the .env alone changes
    r = api.put("/api/active-model", params={"model_id": repo, "restart": "false"})
    assert r.status_code == 202, r.text
    assert wait_job(api, r.json()["job_id"])["status"] == "complete"
    assert env_file.read_bytes() == env_bytes.replace(b"DEFAULT_MODEL=org/old\n", f"DEFAULT_MODEL={repo}\n".encode())
    assert api.get("/api/active-model").json()["model_id"] == repo


# --------------------------------------------------------------------------- activate=true
def test_download_with_activate_switches(box, sim):
    api = box.api
    new = uid_model(box, "activate")
    dl = start_download(api, sim, new, activate="true")
    wait_until(lambda: api.get("/api/active-model").json()["model_id"] == new, 60,
               message="active model switched")
    d = wait_until(lambda: (x := job(api, dl["job_id"]))["status"] in FINAL
                   and "switch_job_id" in (x["result"] or {}) and x, 30, message="switch_job_id recorded")
    assert d["status"] == "complete"
    sw = wait_job(api, d["result"]["switch_job_id"], 40)
    assert sw["status"] == "complete" and sw["kind"] == "switch" and sw["model_id"] == new, sw
    assert served(box.port) == [new]
    assert env_dict(box.dapi.inspect_container(box.name))["DEFAULT_MODEL"] == new
    assert box.env_file.read_bytes() == box.env_bytes.replace(box.old.encode(), new.encode())
    assert leftovers(box) == []
