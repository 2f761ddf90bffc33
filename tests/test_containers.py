"""ContainerManager against a REAL Docker engine.

The engine is brought up by .ci/docker-up.sh when `docker info` fails. Under CI (CI=true) a
missing engine is a failure, never a skip. All containers use the host network and serve on
127.0.0.1 only.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from types import SimpleNamespace

import docker.errors
import httpx
import pytest

from api.containers import ContainerManager, SwitchFailed, merge_env
from api.errors import NotFound, ServiceUnavailable
from api.settings import Settings

try:
    from tests import docker_support as ds
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    import docker_support as ds

pytestmark = pytest.mark.timeout(240)

ORIGINAL_MODEL = "org/original-model"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env(engine, tmp_path_factory):
    run_id = uuid.uuid4().hex[:10]
    name = ds.unique_name("llmbox-test")
    other = ds.unique_name("llmbox-unmanaged")
    absent = ds.unique_name("llmbox-absent")
    port, other_port = ds.free_port(), ds.free_port()
    bind_dir = tmp_path_factory.mktemp("bind")
    (bind_dir / "marker.txt").write_text("bind-mounted\n")
    try:
        ds.run_test_container(
            name, model=ORIGINAL_MODEL, port=port, run_id=run_id,
            env={"EXTRA_VAR": "keep-me", "VLLM_ARGS": "--max-model-len 4096"},
            labels={"com.example.role": "inference"},
            binds={str(bind_dir): {"bind": "/data", "mode": "ro"}},
            restart_policy={"Name": "unless-stopped"})
        ds.run_test_container(other, model="org/unmanaged", port=other_port, run_id=run_id)
        ds.wait_healthy(name)
        ds.wait_healthy(other)
        settings = Settings(_env_file=None, inference_container=name,
                            managed_containers=f"{name},{absent}")
        manager = ContainerManager(settings)
        yield SimpleNamespace(name=name, other=other, absent=absent, port=port,
                              other_port=other_port, bind_dir=bind_dir, run_id=run_id,
                              manager=manager, client=engine, api=engine.api)
        manager.close()
    finally:
        ds.remove_test_containers(run_id)
        for c in engine.containers.list(all=True, filters={"name": name}):
            c.remove(force=True, v=True)


def models_at(port: int) -> list[str]:
    with httpx.Client(trust_env=False, timeout=3) as http:
        resp = http.get(f"http://127.0.0.1:{port}/v1/models")
        resp.raise_for_status()
        return [m["id"] for m in resp.json()["data"]]


def env_dict(info: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in info["Config"]["Env"])


def leftovers(env) -> list[str]:
    """Names of containers that start with the managed name, other than itself."""
    names = [c.name for c in env.client.containers.list(all=True, filters={"name": env.name})]
    return sorted(n for n in names if n != env.name)


def settle(env) -> dict:
    """Wait until the managed container is healthy; return its inspect data."""
    ds.wait_healthy(env.name)
    return env.api.inspect_container(env.name)


# --------------------------------------------------------------------------- unit bits
def test_merge_env_replaces_in_place_and_appends():
    old = ["PATH=/bin", "DEFAULT_MODEL=a", "X=1=2", "DEFAULT_MODEL=dup"]
    assert merge_env(old, {"DEFAULT_MODEL": "b", "NEW": "v"}) == [
        "PATH=/bin", "DEFAULT_MODEL=b", "X=1=2", "NEW=v"]
    assert merge_env(None, {"A": "1"}) == ["A=1"]


# --------------------------------------------------------------------------- queries
def test_available_and_list_shape(env):
    assert env.manager.available() is True
    items = env.manager.list()
    assert [i["name"] for i in items] == [env.name]  # absent name skipped, other invisible
    item = items[0]
    assert set(item) >= {"name", "status", "health", "image", "started_at", "restart_count"}
    assert item["status"] == "running"
    assert item["health"] in ("healthy", "starting")
    assert item["image"] == ds.IMAGE_TAG
    assert item["started_at"] and item["started_at"].startswith("20")
    assert item["restart_count"] == 0


def test_get_shape_and_missing(env):
    settle(env)
    item = env.manager.get(env.name)
    assert item["name"] == env.name and item["health"] == "healthy"
    with pytest.raises(NotFound) as exc:
        env.manager.get(env.absent)  # allow-listed but does not exist
    assert exc.value.code == "container_not_found" and exc.value.status == 404


def test_logs_contain_start_line(env):
    settle(env)
    lines = env.manager.logs(env.name, tail=200)
    assert any(line.startswith("serving ") and f"on port {env.port}" in line for line in lines)
    assert len(env.manager.logs(env.name, tail=1)) == 1


# --------------------------------------------------------------------------- actions
def test_restart_changes_started_at(env):
    before = settle(env)
    result = env.manager.restart(env.name)
    assert result["status"] == "running"
    assert result["started_at"] != before["State"]["StartedAt"]
    after = settle(env)
    assert after["Id"] == before["Id"]
    assert models_at(env.port)  # serving again


def test_stop_then_start(env):
    before = settle(env)
    stopped = env.manager.stop(env.name)
    assert stopped["status"] == "exited"
    assert env.manager.stop(env.name)["status"] == "exited"  # idempotent
    started = env.manager.start(env.name)
    assert started["status"] == "running"
    assert started["started_at"] != before["State"]["StartedAt"]
    settle(env)
    assert env.manager.start(env.name)["status"] == "running"  # idempotent


def test_unmanaged_container_is_invisible_and_untouched(env):
    before = env.api.inspect_container(env.other)
    assert before["State"]["Running"]
    assert env.other not in [i["name"] for i in env.manager.list()]
    for call in (env.manager.get, env.manager.restart, env.manager.stop, env.manager.start,
                 env.manager.logs):
        with pytest.raises(NotFound) as exc:
            call(env.other)
        assert exc.value.code == "container_not_found"
    with pytest.raises(NotFound):
        env.manager.recreate_with_env(env.other, {"DEFAULT_MODEL": "x"}, timeout=5)
    # ID prefixes do not count as names either.
    with pytest.raises(NotFound):
        env.manager.get(before["Id"][:12])
    after = env.api.inspect_container(env.other)
    assert after["State"]["Running"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["RestartCount"] == before["RestartCount"]
    assert after["Name"] == before["Name"]
    assert models_at(env.other_port) == ["org/unmanaged"]


# --------------------------------------------------------------------------- recreate
def test_recreate_to_good_model(env):
    before = settle(env)
    steps: list[str] = []
    result = env.manager.recreate_with_env(
        env.name, {"DEFAULT_MODEL": "org/good-model"}, timeout=60,
        health_url=f"http://127.0.0.1:{env.port}/health",
        models_url=f"http://127.0.0.1:{env.port}/v1/models", expect_model="org/good-model",
        on_step=lambda step, info: steps.append(step))

    assert result["old_container_id"] == before["Id"]
    assert result["new_container_id"] != before["Id"]
    assert result["healthy_after_seconds"] >= 0
    for step in ("inspected", "old_stopped", "old_renamed", "new_created", "new_started",
                 "new_healthy", "backup_removed", "done"):
        assert step in steps
    assert models_at(env.port) == ["org/good-model"]

    after = env.api.inspect_container(env.name)
    assert after["Id"] == result["new_container_id"]
    assert after["State"]["Running"] and after["State"]["Health"]["Status"] == "healthy"
    assert after["Config"]["Image"] == before["Config"]["Image"]
    assert after["Image"] == before["Image"]
    assert after["Config"]["Labels"] == before["Config"]["Labels"]
    assert after["Config"]["Healthcheck"] == before["Config"]["Healthcheck"]
    assert after["Config"]["Entrypoint"] == before["Config"]["Entrypoint"]
    assert after["Config"]["Cmd"] == before["Config"]["Cmd"]
    assert after["HostConfig"]["Binds"] == before["HostConfig"]["Binds"]
    assert after["HostConfig"]["RestartPolicy"] == before["HostConfig"]["RestartPolicy"]
    assert after["HostConfig"]["NetworkMode"] == "host"
    old_env, new_env = env_dict(before), env_dict(after)
    assert new_env["DEFAULT_MODEL"] == "org/good-model"
    assert {k: v for k, v in new_env.items() if k != "DEFAULT_MODEL"} == \
        {k: v for k, v in old_env.items() if k != "DEFAULT_MODEL"}
    assert new_env["EXTRA_VAR"] == "keep-me"
    # the bind mount works in the new container
    exec_out = env.api.exec_start(env.api.exec_create(env.name, ["cat", "/data/marker.txt"]))
    assert exec_out.strip() == b"bind-mounted"

    with pytest.raises(docker.errors.NotFound):
        env.api.inspect_container(result["old_container_id"])  # backup removed
    assert leftovers(env) == []


def test_recreate_to_broken_model_rolls_back(env):
    before = settle(env)
    old_model = env_dict(before)["DEFAULT_MODEL"]
    steps: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(SwitchFailed) as exc:
        env.manager.recreate_with_env(
            env.name, {"DEFAULT_MODEL": "org/broken-model"}, timeout=60,
            models_url=f"http://127.0.0.1:{env.port}/v1/models",
            expect_model="org/broken-model", on_step=lambda step, info: steps.append(step))
    assert time.monotonic() - t0 < 30, "a crashing container must fail fast, not at the deadline"
    err = exc.value
    assert err.code == "switch_failed" and err.status == 502 and err.rolled_back
    assert any("failed to load model 'org/broken-model'" in line for line in err.logs)
    assert err.body()["logs"] == err.logs
    assert "rolled_back" in steps

    after = env.api.inspect_container(env.name)
    assert after["Id"] == before["Id"]  # the very same container, renamed back
    assert after["State"]["Running"]
    assert env_dict(after)["DEFAULT_MODEL"] == old_model
    settle(env)
    assert models_at(env.port) == [old_model]
    assert leftovers(env) == []


def test_recreate_times_out_and_rolls_back(env):
    before = settle(env)
    old_model = env_dict(before)["DEFAULT_MODEL"]
    with pytest.raises(SwitchFailed) as exc:
        env.manager.recreate_with_env(
            env.name, {"DEFAULT_MODEL": "org/slow-model"}, timeout=3,
            models_url=f"http://127.0.0.1:{env.port}/v1/models",
            expect_model="org/never-listed")
    assert "timeout" in exc.value.detail
    assert any("serving org/slow-model" in line for line in exc.value.logs)
    after = settle(env)
    assert after["Id"] == before["Id"]
    assert models_at(env.port) == [old_model]
    assert leftovers(env) == []


def test_recreate_create_failure_restores_old(env, monkeypatch):
    before = settle(env)

    def boom(*args, **kwargs):
        raise docker.errors.APIError("injected create failure")

    monkeypatch.setattr(env.manager.api, "create_container_from_config", boom)
    with pytest.raises(SwitchFailed) as exc:
        env.manager.recreate_with_env(env.name, {"DEFAULT_MODEL": "org/x"}, timeout=30)
    assert "injected create failure" in exc.value.detail
    monkeypatch.undo()
    after = settle(env)
    assert after["Id"] == before["Id"] and after["Name"] == "/" + env.name
    assert leftovers(env) == []


# --------------------------------------------------------------------------- no engine
def test_unreachable_engine_is_503():
    settings = Settings(_env_file=None, docker_host="unix:///nonexistent.sock",
                        managed_containers="vllm")
    manager = ContainerManager(settings)
    assert manager.available() is False
    with pytest.raises(ServiceUnavailable) as exc:
        manager.list()
    assert exc.value.code == "docker_unavailable" and exc.value.status == 503
    with pytest.raises(ServiceUnavailable):
        manager.restart("vllm")
    with pytest.raises(NotFound):  # the allow-list is checked before docker is touched
        manager.restart("postgres")


# --------------------------------------------------------------------------- socket proxy
@pytest.fixture
def socket_proxy(engine):
    """Debian's haproxy with the documented socket-proxy rules (docs/socket-proxy-haproxy.cfg):
    containers allowed, images (and everything else) refused, as a proxy with IMAGES=0."""
    exe = shutil.which("haproxy")
    if exe is None:
        if ds.in_ci():
            pytest.fail("haproxy is required in CI (.ci/run installs Debian's package)")
        pytest.skip("haproxy not installed")
    sock = (os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock").removeprefix("unix://")
    port = ds.free_port()
    proc = subprocess.Popen([exe, "-f", str(ds.ROOT / "docs" / "socket-proxy-haproxy.cfg"), "-db"],
                            env={**os.environ, "PROXY_BIND": f"127.0.0.1:{port}", "DOCKER_SOCKET": sock},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"tcp://127.0.0.1:{port}"
    try:
        ds.wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/_ping", timeout=2).status_code == 200, 20,
                    what="haproxy answering")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_recreate_works_behind_a_socket_proxy_that_refuses_image_calls(env, socket_proxy):
    raw = docker.APIClient(base_url=socket_proxy, timeout=10)
    with pytest.raises(docker.errors.APIError) as refused:
        raw.inspect_image(ds.IMAGE_TAG)
    assert refused.value.status_code == 403   # the proxy's rule, not a missing image
    raw.close()
    manager = ContainerManager(Settings(_env_file=None, inference_container=env.name,
                                        managed_containers=env.name, docker_host=socket_proxy))
    models_url = f"http://127.0.0.1:{env.port}/v1/models"
    try:
        for model in ("org/via-proxy", ORIGINAL_MODEL):
            result = manager.recreate_with_env(env.name, {"DEFAULT_MODEL": model}, timeout=30,
                                               models_url=models_url, expect_model=model)
            assert result["new_container_id"] != result["old_container_id"]
            info = env.api.inspect_container(env.name)
            assert info["Config"]["Image"] == ds.IMAGE_TAG and info["State"]["Running"]
            assert models_at(env.port) == [model]
    finally:
        manager.close()


def test_recreate_keeps_the_old_image_when_its_tag_moved(env, engine):
    """The tag the container was created from now names another image: the copy runs the old one."""
    tag = f"llmbox-test-moved:{uuid.uuid4().hex[:8]}"
    old_image = env.api.inspect_container(env.name)["Image"]
    engine.api.tag(old_image, *tag.split(":"))
    name = ds.unique_name("llmbox-moved")
    try:
        ds.run_test_container(name, model="org/a", port=ds.free_port(), image=tag, run_id=env.run_id)
        ds.wait_healthy(name)
        engine.api.remove_image(tag)   # the reference no longer resolves at all
        manager = ContainerManager(Settings(_env_file=None, inference_container=name, managed_containers=name))
        result = manager.recreate_with_env(name, {"DEFAULT_MODEL": "org/b"}, timeout=30)
        manager.close()
        info = env.api.inspect_container(name)
        assert info["Image"] == old_image and info["Config"]["Image"] == old_image
        assert any(s["step"] == "new_created" and s.get("image") == old_image for s in result["steps"])
    finally:
        for c in engine.containers.list(all=True, filters={"name": name}):
            c.remove(force=True)
