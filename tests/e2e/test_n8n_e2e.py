"""The docs/n8n workflows in a real N8n (1.123.81) against the API and the Hub simulator, all on 127.0.0.1.

- the polling workflow and the clean-up run with `n8n import:workflow` + `n8n execute --id … --rawOutput`;
- the webhook workflow needs a listening N8n for its Wait node ("On Webhook Call"): `n8n start` runs
  on a free port and `n8n execute` (same N8N_USER_FOLDER, so the same database) starts the workflow;
  the execution parks in the Wait node, the API's webhook POSTs the job to $execution.resumeUrl and
  the `n8n start` process finishes the execution.

The API key reaches N8n as a Header Auth credential imported with `n8n import:credentials`, so the
workflow files run exactly as shipped. restart=false comes from LLMBOX_RESTART (no container here).
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from api import create_app
from api import envfile
from api.testing.hubsim import model_repos

from ..conftest import API_KEY, make_settings
from ..servers import free_port, serve_in_thread, wait_until

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "docs" / "n8n"
POLL_ID, WEBHOOK_ID, CLEANUP_ID = "llmboxDlPolling1", "llmboxDlWebhook1", "llmboxCleanup001"
FIT_ID = "llmboxFitCheck01"
POLL_MODEL, WEBHOOK_MODEL = "e2e-org/poll-chat", "e2e-org/webhook-chat"
OLD_MODEL, RECENT_MODEL, STALE_ACTIVE = "e2e-org/old-unused", "e2e-org/recent", "e2e-org/old-but-active"
CRED = {"id": "llmboxApiKey0001", "name": "LLM box API key", "type": "httpHeaderAuth"}
FILES = {"config.json": b'{"model_type": "llama", "hidden_size": 64}\n', "tokenizer.json": 50_000,
         "model.safetensors": 3 << 20}


class N8n:
    def __init__(self, binary: Path, home: Path, env: dict[str, str]):
        self.binary, self.home = binary, home
        self.env = {**os.environ, "N8N_USER_FOLDER": str(home), "N8N_DIAGNOSTICS_ENABLED": "false",
                    "N8N_VERSION_NOTIFICATIONS_ENABLED": "false", "N8N_PERSONALIZATION_ENABLED": "false",
                    "N8N_RUNNERS_ENABLED": "false", "N8N_HIRING_BANNER_ENABLED": "false",
                    "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false", "N8N_LOG_LEVEL": "info",
                    "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false", "NO_COLOR": "1", **env}
        self.log = home / "n8n-cli.log"
        self.timings: list[tuple[str, float]] = []

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        p = subprocess.run([str(self.binary), *args], env=self.env, cwd=self.home, capture_output=True,
                           text=True, timeout=timeout)
        self.timings.append((" ".join(args[:2]), round(time.monotonic() - t0, 1)))
        with open(self.log, "a") as f:
            f.write(f"$ n8n {' '.join(args)}  -> {p.returncode}\n{p.stdout}\n{p.stderr}\n")
        if check and p.returncode != 0:
            raise AssertionError(f"n8n {' '.join(args)} exited {p.returncode}:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
        return p

    def execute(self, workflow_id: str, timeout: float = 300) -> dict:
        p = self.run("execute", f"--id={workflow_id}", "--rawOutput", timeout=timeout, check=False)
        run = parse_run(p.stdout)
        if p.returncode != 0 or run is None:
            raise AssertionError(f"n8n execute {workflow_id} exited {p.returncode}:\n"
                                 f"{p.stdout[-6000:]}\n{p.stderr[-4000:]}")
        return run


def parse_run(stdout: str) -> dict | None:
    """The run JSON printed by `execute --rawOutput` (log lines may come before it)."""
    dec = json.JSONDecoder()
    i = stdout.find("{")
    while i >= 0:
        try:
            obj, _ = dec.raw_decode(stdout[i:])
            if isinstance(obj, dict) and "data" in obj:
                return obj
        except ValueError:
            pass
        i = stdout.find("\n{", i + 1)
        i = i + 1 if i >= 0 else -1
    return None


def node_items(run: dict, node: str) -> list[dict]:
    runs = run["data"]["resultData"]["runData"].get(node, [])
    out = []
    for r in runs:
        for branch in (r.get("data") or {}).get("main", []) or []:
            out += [i["json"] for i in branch or []]
    return out


def ran(run: dict) -> set[str]:
    return set(run["data"]["resultData"]["runData"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sim, n8n_bin):
    tmp = tmp_path_factory.mktemp("e2e")
    for repo in (POLL_MODEL, WEBHOOK_MODEL, OLD_MODEL, RECENT_MODEL, STALE_ACTIVE):
        sim.add_repo(repo, FILES)
    model_repos.install(sim)
    settings = make_settings(tmp, sim, gpu_memory_gb=24)   # the fit-check workflow needs a known GPU
    with serve_in_thread(create_app(settings)) as url:
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
        home = tmp / "n8n-home"
        home.mkdir()
        n8n = N8n(n8n_bin, home, {"LLMBOX_API_URL": url, "LLMBOX_RESTART": "false", "LLMBOX_POLL_SECONDS": "1",
                                  "LLMBOX_MAX_POLLS": "120", "LLMBOX_KEEP_DAYS": "30", "LLMBOX_WAIT_HOURS": "1"})
        cred_file = tmp / "credentials.json"
        cred_file.write_text(json.dumps([{**CRED, "data": {"name": "Authorization", "value": f"Bearer {API_KEY}"}}]))
        n8n.run("import:credentials", f"--input={cred_file}")
        n8n.run("import:workflow", "--separate", f"--input={WORKFLOWS}")
        yield {"api": api, "settings": settings, "n8n": n8n, "url": url, "tmp": tmp}
        api.close()
        print("\nN8n CLI timings (s):", n8n.timings)


def snapshot_files(settings, repo: str) -> list[Path]:
    d = settings.hf_cache / ("models--" + repo.replace("/", "--")) / "snapshots"
    return [p for p in d.rglob("*") if p.is_file()] if d.exists() else []


def active(settings) -> str | None:
    return envfile.read_value(settings.env_file)


def download(api: httpx.Client, repo: str) -> None:
    r = api.post("/api/download-model", params={"model_id": repo})
    assert r.status_code in (200, 202), r.text
    job_id = r.json()["job_id"]
    wait_until(lambda: api.get(f"/api/jobs/{job_id}").json()["status"] == "complete", 60, message=repo)


def age(settings, repo: str, days: float) -> None:
    """Make a cached model look untouched for `days` days (last_modified is the newest mtime in it)."""
    t = time.time() - days * 86400
    folder = settings.hf_cache / ("models--" + repo.replace("/", "--"))
    for p in [folder, *folder.rglob("*")]:
        os.utime(p, (t, t), follow_symlinks=False)


def test_polling_workflow_downloads_and_activates(stack):
    api, settings, n8n = stack["api"], stack["settings"], stack["n8n"]
    n8n.env["LLMBOX_MODEL_ID"] = POLL_MODEL
    assert active(settings) == "org/none"
    t0 = time.monotonic()
    run = n8n.execute(POLL_ID)
    elapsed = time.monotonic() - t0
    assert run["status"] == "success", run.get("status")
    assert "Model active" in ran(run), sorted(ran(run))
    assert not {"Download refused", "Download: failed", "Switch refused", "Switch: failed"} & ran(run)
    # the model is on disk, complete, and the .env names it
    assert len(snapshot_files(settings, POLL_MODEL)) == len(FILES)
    status = api.get("/api/models/status", params={"model_id": POLL_MODEL}).json()
    assert status["status"] == "complete" and status["active"] is True, status
    assert active(settings) == POLL_MODEL
    switch = node_items(run, "Switch: complete?")[-1]
    assert switch["kind"] == "switch" and switch["status"] == "complete" and switch["result"]["restart"] is False
    print(f"\npolling workflow: {elapsed:.1f}s")


def test_polling_workflow_stops_on_refused_download(stack):
    """Never Error + IF on the status code: a 404 repo_not_found ends in "Download refused", nothing changes."""
    settings, n8n = stack["settings"], stack["n8n"]
    before = active(settings)
    n8n.env["LLMBOX_MODEL_ID"] = "e2e-org/does-not-exist"
    try:
        p = n8n.run("execute", f"--id={POLL_ID}", "--rawOutput", check=False)
    finally:
        n8n.env["LLMBOX_MODEL_ID"] = POLL_MODEL
    out = p.stdout + p.stderr
    assert p.returncode != 0 or "Execution was NOT successful" in out, out[-3000:]
    assert "Download not queued: repo_not_found (404)" in out, out[-3000:]
    assert active(settings) == before


def test_webhook_workflow_with_n8n_start(stack, tmp_path):
    """download -> Wait (On Webhook Call) -> PUT /api/active-model -> Wait -> done, via a listening N8n."""
    api, settings, n8n = stack["api"], stack["settings"], stack["n8n"]
    port = free_port()
    env = {**n8n.env, "N8N_PORT": str(port), "N8N_LISTEN_ADDRESS": "127.0.0.1", "N8N_HOST": "127.0.0.1",
           "WEBHOOK_URL": f"http://127.0.0.1:{port}/", "LLMBOX_MODEL_ID": WEBHOOK_MODEL}
    log = open(tmp_path / "n8n-start.log", "w")
    t0 = time.monotonic()
    server = subprocess.Popen([str(n8n.binary), "start"], env=env, cwd=n8n.home, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        def up():
            assert server.poll() is None, (tmp_path / "n8n-start.log").read_text()[-4000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz/readiness", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(up, 180, interval=0.5, message="n8n start")
        started = time.monotonic() - t0
        saved, n8n.env = n8n.env, env
        try:
            first = n8n.execute(WEBHOOK_ID)   # returns when the execution parks in its first Wait node
        finally:
            n8n.env = saved
        assert first["status"] == "waiting", first.get("status")
        assert first["data"]["resultData"]["lastNodeExecuted"] == "Wait for download webhook"
        queued = node_items(first, "Queue download")[0]
        assert queued["statusCode"] == 202, queued
        job = queued["body"]
        assert job["callback_url"].startswith(f"http://127.0.0.1:{port}/webhook-waiting/")

        # the API posts the finished download to the resume URL; N8n resumes and switches the model
        wait_until(lambda: active(settings) == WEBHOOK_MODEL, 120, interval=0.5, message="DEFAULT_MODEL switched")
        done = wait_until(lambda: (j := api.get(f"/api/jobs/{job['job_id']}").json()).get("webhook", {})
                          .get("status") in ("delivered", "failed") and j, 60, message="download webhook")
        assert done["status"] == "complete" and done["webhook"]["status"] == "delivered", done
        switch = wait_until(lambda: [j for j in api.get("/api/jobs", params={"kind": "switch"}).json()
                                     if j["model_id"] == WEBHOOK_MODEL and j.get("webhook", {}).get("status")
                                     in ("delivered", "failed")], 60, message="switch webhook")[0]
        assert switch["status"] == "complete" and switch["webhook"]["status"] == "delivered", switch
        assert switch["callback_url"] == job["callback_url"], "both Wait nodes resume on the same URL"
        assert len(snapshot_files(settings, WEBHOOK_MODEL)) == len(FILES)
        assert api.get("/api/active-model").json()["model_id"] == WEBHOOK_MODEL
        # and N8n finished the execution: status success in its database, ended in "Model active"
        execution_id = job["callback_url"].rstrip("/").rsplit("/", 1)[-1]
        db = n8n.home / ".n8n" / "database.sqlite"

        def finished():
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
                row = con.execute("SELECT e.status, d.data FROM execution_entity e JOIN execution_data d "
                                  "ON d.executionId = e.id WHERE e.id = ?", (execution_id,)).fetchone()
            # N8n writes the status and the run data in two statements, so a read between them sees
            # "success" with the data of the last Wait: the end is the status plus its last node's name
            ended = row and row[0] in ("success", "error", "crashed", "canceled")
            return ended and (row[0] != "success" or '"Model active"' in row[1]) and row
        status, data = wait_until(finished, 60, interval=0.5, message=f"N8n execution {execution_id} to end")
        assert status == "success", data[:3000]
        assert '"Model active"' in data and '"Switch failed"' not in data
        print(f"\nwebhook workflow: n8n start ready in {started:.1f}s, total {time.monotonic() - t0:.1f}s")
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_cleanup_workflow_deletes_unused_models(stack):
    api, settings, n8n = stack["api"], stack["settings"], stack["n8n"]
    for repo in (OLD_MODEL, RECENT_MODEL, STALE_ACTIVE):
        download(api, repo)
    age(settings, OLD_MODEL, 60)
    age(settings, STALE_ACTIVE, 90)
    envfile.set_value(settings.env_file, STALE_ACTIVE)   # active, however old: kept
    before = {m["model_id"]: m for m in api.get("/api/models").json()}
    assert {OLD_MODEL, RECENT_MODEL, STALE_ACTIVE, POLL_MODEL} <= set(before)

    n8n.env["LLMBOX_DRY_RUN"] = "true"
    dry = n8n.execute(CLEANUP_ID)
    assert dry["status"] == "success"
    assert [i["would_delete"] for i in node_items(dry, "Would delete")] == [OLD_MODEL]
    assert "Delete model" not in ran(dry)
    assert snapshot_files(settings, OLD_MODEL), "a dry run deletes nothing"

    n8n.env["LLMBOX_DRY_RUN"] = "false"
    run = n8n.execute(CLEANUP_ID)
    assert run["status"] == "success"
    deleted = node_items(run, "Deleted")
    assert [d["body"]["model_id"] for d in deleted] == [OLD_MODEL], deleted
    assert deleted[0]["body"]["status"] == "deleted" and deleted[0]["body"]["freed_bytes"] > 0
    after = {m["model_id"] for m in api.get("/api/models").json()}
    assert OLD_MODEL not in after
    assert not (settings.hf_cache / ("models--" + OLD_MODEL.replace("/", "--"))).exists()
    assert {RECENT_MODEL, STALE_ACTIVE, POLL_MODEL} <= after
    assert active(settings) == STALE_ACTIVE


def test_fit_check_workflow_dry_runs_then_downloads(stack):
    """Dry run -> IF fit and disk verdicts -> download and poll; a failed dry run stops before any download."""
    settings, n8n = stack["settings"], stack["n8n"]
    n8n.env.update(LLMBOX_MODEL_ID=model_repos.QWEN3_GGUF, LLMBOX_INCLUDE="Qwen3-8B-Q4_K_M.gguf")
    run = n8n.execute(FIT_ID)
    assert run["status"] == "success", run.get("status")
    assert "Downloaded" in ran(run) and not {"Does not fit", "Download refused", "Download: failed"} & ran(run)
    plan = node_items(run, "Dry run")[0]["body"]
    assert plan["status"] == "dry_run" and plan["fit"]["verdict"] == "fits" and plan["disk"]["verdict"] == "fits"
    assert [p.name for p in snapshot_files(settings, model_repos.QWEN3_GGUF)] == ["Qwen3-8B-Q4_K_M.gguf"]

    n8n.env["LLMBOX_MODEL_ID"] = "e2e-org/does-not-exist"
    p = n8n.run("execute", f"--id={FIT_ID}", "--rawOutput", check=False)
    out = p.stdout + p.stderr
    assert "Not downloading e2e-org/does-not-exist: HTTP 404 repo_not_found" in out, out[-3000:]
    assert not (settings.hf_cache / "models--e2e-org--does-not-exist").exists()
