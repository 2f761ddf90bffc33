"""Fleet mode on a real two-node Swarm (tests/fleet_support.py): downloads land verified on every
node, a rolling switch reaches every task, a failing model is rolled back by Swarm on every node,
a node drained mid-download does not fail the job for the others, a node whose fetch failed is
retried by itself from its bytes, and fleet jobs post their final state to a webhook."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
import uuid

import yaml

import docker.errors
import pytest

from api import envfile
from api.fleet.retry import RetryingJob, RetryPolicy
from api.fleet.swarm import JobSpec, Swarm
from api.testing.hubsim import Fault

from . import docker_support as ds
from . import fleet_support as fs
from ._dl import FINAL, MiB, random_bytes
from .conftest import API_KEY, GATED_TOKEN
from .servers import wait_until
from .test_webhooks import Receiver

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def swarm(engine):
    s = None
    try:
        s = fs.start()
    except Exception as e:  # noqa: BLE001
        fs.stop(s)
        if ds.in_ci():
            pytest.fail(f"two-node swarm required in CI: {e}")
        pytest.skip(f"no two-node swarm: {e}")
    yield s
    fs.stop(s)


@pytest.fixture(scope="module")
def fleet_root(swarm, tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    for nid in swarm.node_ids():
        (root / nid).mkdir()
    return root


@pytest.fixture(scope="module")
def service(swarm):
    name = f"llmbox-test-infer-{swarm.run_id}"
    svc = fs.inference_service(swarm, name, "org/fleet-base")
    wait_until(lambda: len(running_tasks(svc)) == 2, 60, 0.5, "two inference tasks running")
    yield svc
    svc.remove()


@pytest.fixture
def fleet_settings(swarm, service, fleet_root) -> dict:
    return dict(orchestrator="swarm", inference_service=service.name, fleet_image=swarm.image,
                fleet_models_path=str(fleet_root) + "/{{.Node.ID}}", docker_host=None)


@pytest.fixture
def fleet_api(api_factory, fleet_settings):
    return api_factory(**fleet_settings)


def running_tasks(svc) -> dict[str, dict]:
    svc.reload()
    return {t["NodeID"]: t for t in svc.tasks(filters={"desired-state": "running"})
            if t["Status"]["State"] == "running"}


def task_models(svc) -> dict[str, str]:
    return {nid: dict(e.split("=", 1) for e in t["Spec"]["ContainerSpec"]["Env"])["DEFAULT_MODEL"]
            for nid, t in running_tasks(svc).items()}


def wait_job(api, job_id: str, timeout: float = 120) -> dict:
    def final():
        j = api.get(f"/api/jobs/{job_id}").json()
        return j if j["status"] in FINAL else None
    return wait_until(final, timeout, 0.5, f"fleet job {job_id}")


def add_model(sim, name: str, size: int = 2 * MiB) -> tuple[str, dict[str, bytes]]:
    repo = f"org/{name}-{uuid.uuid4().hex[:6]}"
    files = {"config.json": b'{"model_type": "fake"}', "model.safetensors": random_bytes(size, repo)}
    sim.add_repo(repo, files)
    return repo, files


def snapshot_files(root, node_id: str, repo: str) -> dict[str, bytes]:
    snaps = root / node_id / "hub" / ("models--" + repo.replace("/", "--")) / "snapshots"
    out = {}
    for snap in snaps.iterdir():
        for p in snap.rglob("*"):
            if p.is_file():
                out[str(p.relative_to(snap))] = p.read_bytes()
    return out


def test_fleet_download_lands_verified_on_every_node_and_nodes_lists_it(fleet_api, sim, swarm, fleet_root):
    repo, files = add_model(sim, "fleet-dl")
    r = fleet_api.post("/api/fleet/download-model", params={"model_id": repo})
    assert r.status_code == 202, r.text
    job = wait_job(fleet_api, r.json()["job_id"])
    assert job["status"] == "complete", job
    nodes = {n["node_id"]: n for n in job["result"]["nodes"]}
    assert sorted(nodes) == swarm.node_ids()
    for nid in swarm.node_ids():
        assert nodes[nid]["state"] == "complete" and nodes[nid]["result"]["verified"] is True
        assert snapshot_files(fleet_root, nid, repo) == files   # identical bytes on each node's own disk
    # The job service is gone; the node listing shows the model in each node's cache.
    assert not swarm.manager.services.list(filters={"label": "llmbox.fleet.job"})
    listing = fleet_api.get("/api/fleet/nodes").json()
    assert listing["model_id"] == "org/fleet-base"
    for n in listing["nodes"]:
        assert n["labels"][fs.GPU_LABEL] == "true" and n["inference"]["state"] == "running"
        assert {m["model_id"]: m["status"] for m in n["models"]}[repo] == "complete"
    # modelctl fleet nodes: one row per node with its inference task and its models.
    out = subprocess.run([str(ds.ROOT / "scripts" / "modelctl"), "--api-url", str(fleet_api.base_url), "fleet",
                          "nodes"], env={**os.environ, "PROXY_API_KEY": API_KEY}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line[:12] in {n[:12] for n in swarm.node_ids()}]
    assert len(rows) == 2 and all("running org/fleet-base" in r and repo in r for r in rows), out.stdout

    # A fleet delete removes it from every node's cache.
    r = fleet_api.delete("/api/fleet/delete-model", params={"model_id": repo})
    assert r.status_code == 202, r.text
    job = wait_job(fleet_api, r.json()["job_id"])
    assert job["status"] == "complete" and job["result"]["complete"] == 2, job
    for nid in swarm.node_ids():
        assert not (fleet_root / nid / "hub" / ("models--" + repo.replace("/", "--"))).exists()


def test_gated_model_reaches_every_node_through_a_per_job_secret(api_factory, fleet_settings, sim, swarm,
                                                                  fleet_root):
    api = api_factory(**fleet_settings, hf_token=GATED_TOKEN)
    repo = f"org/fleet-gated-{uuid.uuid4().hex[:6]}"
    files = {"config.json": b'{"gated": true}'}
    sim.add_repo(repo, files, gated=True)
    r = api.post("/api/fleet/download-model", params={"model_id": repo})
    assert r.status_code == 202, r.text
    job = wait_job(api, r.json()["job_id"])
    assert job["status"] == "complete", job
    for nid in swarm.node_ids():
        assert snapshot_files(fleet_root, nid, repo) == files
    # The token travelled as a Swarm secret that is gone with the job, and is in no job field.
    assert not swarm.manager.secrets.list(filters={"label": "llmbox.fleet.job"})
    assert GATED_TOKEN not in api.get(f"/api/jobs/{job['job_id']}").text


def test_fleet_switch_rolls_out_and_a_failing_model_rolls_back(fleet_api, sim, swarm, service):
    good, _ = add_model(sim, "fleet-good", 64 * 1024)
    # A GGUF variant left in .env by a single-box switch is not carried over to the fleet's model.
    envfile.set_values(fleet_api.settings.env_file, {envfile.VARIANT_KEY: "Q4_K_M"})
    r = fleet_api.put("/api/fleet/active-model", params={"model_id": good})
    assert r.status_code == 202, r.text
    assert fleet_api.put("/api/fleet/active-model", params={"model_id": good}).status_code == 409
    job = wait_job(fleet_api, r.json()["job_id"], 180)
    assert job["status"] == "complete", job
    assert job["result"]["update_state"] == "completed" and job["result"]["env_rewritten"] is True
    assert [n["state"] for n in job["result"]["fetch"]] == ["complete", "complete"]
    assert [(t["model_id"], t["state"]) for t in job["result"]["tasks"]] == [(good, "running")] * 2
    assert wait_until(lambda: set(task_models(service).values()) == {good} and len(task_models(service)) == 2,
                      30, 0.5, "every task on the new model")
    assert f"DEFAULT_MODEL={good}" in fleet_api.settings.env_file.read_text()
    assert envfile.read_value(fleet_api.settings.env_file, envfile.VARIANT_KEY) == ""

    # The service's model cannot be deleted from the fleet.
    r = fleet_api.delete("/api/fleet/delete-model", params={"model_id": good})
    assert r.status_code == 409 and r.json()["error"] == "model_active"

    broken, _ = add_model(sim, "fleet-broken", 64 * 1024)
    env_before = fleet_api.settings.env_file.read_text()
    with Receiver() as rcv:
        r = fleet_api.put("/api/fleet/active-model", params={"model_id": broken, "callback_url": rcv.url})
        assert r.status_code == 202, r.text
        job = wait_job(fleet_api, r.json()["job_id"], 180)
        sent = json.loads(rcv.wait(1, 30)[0]["body"])   # the final state, rollback reason included
    assert (sent["kind"], sent["status"], sent["error_code"]) == ("fleet_switch", "failed", "rolled_back"), sent
    assert sent["result"]["rolled_back"] is True and sent["result"]["reason"] == job["result"]["reason"]
    assert [n["state"] for n in sent["result"]["fetch"]] == ["complete", "complete"]
    assert job["status"] == "failed" and job["error_code"] == "rolled_back", job
    # The reason names a node whose task of the broken model ended by itself (Swarm's own message
    # saying so lasts only until the rollback completes: a poll may miss it).
    assert job["result"]["rolled_back"] is True, job
    assert any(f"node {nid[:12]}: " in job["result"]["reason"] for nid in swarm.node_ids()), job["result"]
    assert job["result"]["previous_model"] == good and job["result"]["env_rewritten"] is False
    assert wait_until(lambda: task_models(service) if len(task_models(service)) == 2 else None, 30, 0.5,
                      "two running tasks") == {nid: good for nid in task_models(service)}
    assert fleet_api.settings.env_file.read_text() == env_before


def test_node_drained_mid_download_does_not_fail_the_others(api_factory, fleet_settings, sim, swarm, fleet_root):
    # One connection at 300 kB/s: ~10 s per node, so the worker is drained while it downloads.
    fleet_api = api_factory(**fleet_settings, download_connections=1)
    repo, files = add_model(sim, "fleet-drain", 3 * MiB)
    sim.set_faults(Fault(repo=repo, path="model.safetensors", rate_bps=300_000))
    worker = swarm.worker_id()
    frozen = []
    try:
        r = fleet_api.post("/api/fleet/download-model", params={"model_id": repo})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        def worker_downloading():
            j = fleet_api.get(f"/api/jobs/{job_id}").json()
            nodes = {n["node_id"]: n for n in (j["result"] or {}).get("nodes", [])}
            return nodes.get(worker, {}).get("phase") == "downloading"
        wait_until(worker_downloading, 90, 0.5, "the worker node downloading")
        # Swarm 20.10 lets a job task finish on a drained node; freeze it so that the job can
        # only end by leaving the drained node out.
        frozen = swarm.worker.containers.list(filters={"label": "llmbox.fleet.job=fetch"})
        for c in frozen:
            c.pause()
        swarm.set_availability(worker, "drain")
        job = wait_job(fleet_api, job_id, 120)
    finally:
        for c in frozen:
            try:
                c.unpause()
            except docker.errors.APIError:
                pass   # already removed with the job service
        swarm.set_availability(worker, "active")
    assert frozen and job["status"] == "complete", job
    nodes = {n["node_id"]: n for n in job["result"]["nodes"]}
    manager = next(n for n in swarm.node_ids() if n != worker)
    assert nodes[manager]["state"] == "complete"
    assert snapshot_files(fleet_root, manager, repo) == files
    # The job did not wait for the drained node, nor count it as failed.
    assert nodes[worker]["state"] == "skipped" and nodes[worker]["error"] == "node drain", nodes[worker]
    assert job["result"]["skipped"] == 1 and job["result"]["failed"] == 0


def test_a_failed_node_is_retried_from_its_bytes_and_the_webhook_carries_every_node(api_factory, fleet_settings,
                                                                                   sim, swarm, fleet_root):
    # One connection and no retries of the node's own: the one dropped response fails the first run
    # of whichever node gets it (after `cut` bytes); the fleet retries that node alone.
    size, cut = 4 * MiB, 3 * MiB
    api = api_factory(**fleet_settings, download_connections=1, max_retries=0, fleet_retry_backoff=2,
                      webhook_secret="fleet-s3cret", webhook_backoff_max=0.2)
    repo, files = add_model(sim, "fleet-retry", size)
    sim.set_faults(Fault(repo=repo, path="model.safetensors", times=1, drop_after=cut))
    with Receiver() as rcv:
        r = api.post("/api/fleet/download-model", params={"model_id": repo, "callback_url": rcv.url + "/fleet"})
        assert r.status_code == 202, r.text
        seen: set[tuple[str, str]] = set()   # (node, state) as the job showed them

        def final():
            j = api.get(f"/api/jobs/{r.json()['job_id']}").json()
            seen.update((n["node_id"], n["state"]) for n in (j["result"] or {}).get("nodes", []))
            return j if j["status"] in FINAL else None
        job = wait_until(final, 180, 0.2, "the fleet job with a retry")
        assert job["status"] == "complete", job
        nodes = {n["node_id"]: n for n in job["result"]["nodes"]}
        assert sorted(nodes) == swarm.node_ids() and job["result"]["complete"] == 2, job["result"]
        assert sorted((n["attempts"], tuple(n["earlier_errors"])) for n in nodes.values()) == \
            [(1, ()), (2, ("network_error",))], nodes
        retried = next(nid for nid, n in nodes.items() if n["attempts"] == 2)
        assert (retried, "retrying") in seen and (retried, "failed") not in seen, seen   # shown while it waits
        for nid in swarm.node_ids():
            assert nodes[nid]["result"]["verified"] is True
            assert snapshot_files(fleet_root, nid, repo) == files
        # Resumed, not restarted: the retried node fetched only what its first run had not.
        served = sim.served_bytes(repo, "model.safetensors")
        assert size + cut <= served < 2 * size + cut // 2, served

        # The final state reaches the receiver, signed, with every node's entry.
        req = rcv.wait(1, 30)[0]
        assert req["path"] == "/fleet" and req["headers"]["x-job-id"] == job["job_id"]
        signed = "sha256=" + hmac.new(b"fleet-s3cret", req["body"], hashlib.sha256).hexdigest()
        assert req["headers"]["x-signature-256"] == signed
        sent = json.loads(req["body"])
        assert sent["kind"] == "fleet_download" and sent["status"] == "complete" and sent["model_id"] == repo
        assert sent["result"]["nodes"] == job["result"]["nodes"]


def test_a_retry_waits_for_the_tasks_a_removed_job_service_leaves_running(swarm):
    # Swarm 20.10 lets the running tasks of a removed job service run to their end; a retry on
    # their node must wait for them, or two runs would share the node's cache.
    sw, nodes = Swarm(None), swarm.node_ids()
    spec = JobSpec(name=f"llmbox-test-sleep-{swarm.run_id}", image=swarm.image, env={}, mounts=[],
                   command=["python3", "-c", "import time; time.sleep(8)"], constraints=[],
                   labels={"llmbox.test.run": swarm.run_id})
    try:
        sid = sw.create_job(spec)
        wait_until(lambda: [t.state for t in sw.live_tasks(sid, nodes)] == ["running"] * 2, 60, 0.3,
                   "two running tasks")
        sw.remove(sid)
        assert len(sw.live_tasks(sid, nodes)) == 2, "the tasks run on after the service is removed"
        RetryingJob(sw, spec, 60, threading.Event(), lambda runs: None, RetryPolicy(1, 0))._quiet(sid, nodes)
        assert not sw.live_tasks(sid, nodes)
    finally:
        sw.close()


def test_a_node_that_fails_ends_the_job_with_its_error(fleet_api, swarm):
    # Swarm 20.10 starts a failed job task again whatever its restart policy says: the job must
    # still end, at each node's first answer, and take the job service (and its retries) with it.
    repo = f"org/fleet-absent-{uuid.uuid4().hex[:6]}"
    r = fleet_api.post("/api/fleet/download-model", params={"model_id": repo})
    assert r.status_code == 202, r.text
    job = wait_job(fleet_api, r.json()["job_id"], 90)
    assert job["status"] == "failed" and job["error_code"] == "fleet_nodes_failed", job
    assert [(n["state"], n["error_code"]) for n in job["result"]["nodes"]] == [("failed", "repo_not_found")] * 2
    assert [n["attempts"] for n in job["result"]["nodes"]] == [1, 1]   # not found: no retry mends it
    assert not swarm.manager.services.list(filters={"label": "llmbox.fleet.job"})


def test_fleet_routes_refuse_bad_input_and_container_mode(api_factory, fleet_api):
    r = fleet_api.post("/api/fleet/download-model", params={"model_id": "../etc"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_model_id"
    plain = api_factory()
    r = plain.get("/api/fleet/nodes")
    assert r.status_code == 409 and r.json()["error"] == "fleet_disabled"


def test_stack_file_deploys_the_inference_service_with_swarm_rollback():
    stack = yaml.safe_load((ds.ROOT / "docker-stack.yml").read_text())
    vllm = stack["services"]["vllm"]["deploy"]
    assert vllm["mode"] == "global" and vllm["placement"]["constraints"] == ["node.labels.llmbox.gpu==true"]
    rolling = {"parallelism": 1, "order": "stop-first", "failure_action": "rollback"}
    assert rolling.items() <= vllm["update_config"].items()
    assert vllm["update_config"]["monitor"] and stack["services"]["vllm"]["healthcheck"]["test"]
    assert "rollback_config" in vllm and "resources" not in vllm   # no compose-only GPU request
    api_env = stack["services"]["api"]["environment"]
    assert api_env["ORCHESTRATOR"] == "swarm" and api_env["INFERENCE_SERVICE"] == "llmbox_vllm"
