"""The model cache through real HTTP: list/status/disk, verify jobs, delete guards, activate=true.

Models get into the cache the way users get them there: a download from the hub simulator
through the API. Assertions look at the files on disk and the .env bytes, not at mocks.
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from api.testing.hubsim import Fault

from .servers import free_port, wait_until

pytestmark = pytest.mark.timeout(120)

FINAL = ("complete", "failed", "cancelled")
FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": 2 << 20}


# --------------------------------------------------------------------------- helpers
def uid_repo(prefix: str = "m") -> str:
    return f"org/{prefix}-{uuid.uuid4().hex[:8]}"


def folder_of(client: httpx.Client, repo: str) -> Path:
    return client.settings.hf_cache / ("models--" + repo.replace("/", "--"))


def job(client: httpx.Client, job_id: str) -> dict:
    r = client.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60, statuses=FINAL) -> dict:
    return wait_until(lambda: (j := job(client, job_id))["status"] in statuses and j, timeout,
                      message=f"job {job_id} in {statuses}")


def start_download(client: httpx.Client, sim, repo: str, files=None, **params) -> dict:
    sim.add_repo(repo, dict(files or FILES))
    r = client.post("/api/download-model", params={"model_id": repo, **params})
    assert r.status_code == 202, r.text
    return r.json()


def download(client: httpx.Client, sim, repo: str, files=None, **params) -> dict:
    j = wait_job(client, start_download(client, sim, repo, files, **params)["job_id"])
    assert j["status"] == "complete", j
    return j


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) >= {"error", "detail", "status"}, body
    assert body["status"] == status and isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["error"] == code, body
    return body


def set_default_model(client: httpx.Client, value: str) -> None:
    env = client.settings.env_file
    lines = [ln for ln in env.read_text().splitlines() if not ln.startswith("DEFAULT_MODEL=")]
    env.write_text("\n".join(lines + [f"DEFAULT_MODEL={value}"]) + "\n")


def blob_of(client: httpx.Client, sim, repo: str, path: str) -> Path:
    return folder_of(client, repo) / "blobs" / sim.file_info(repo, path)["etag"]


def tree_snapshot(root: Path) -> dict[str, int]:
    """Every path under root (symlinks not followed) with its size: to prove nothing moved."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            out[str(p.relative_to(root))] = p.lstat().st_size if not p.is_dir() or p.is_symlink() else -1
    return out


# --------------------------------------------------------------------------- list / status / disk
def test_list_status_disk_and_active_follows_env(api_factory, sim):
    api = api_factory()
    repo, other = uid_repo("list"), uid_repo("list-other")
    download(api, sim, repo)
    download(api, sim, other, {"config.json": b"{}"})

    models = api.get("/api/models")
    assert models.status_code == 200
    by_id = {m["model_id"]: m for m in models.json()}
    assert set(by_id) == {repo, other}
    m = by_id[repo]
    assert set(m) >= {"model_id", "revision", "commit", "status", "size_bytes", "files", "active",
                      "last_modified"}
    assert m["revision"] == "main"
    assert m["commit"] == (folder_of(api, repo) / "refs" / "main").read_text().strip()
    assert len(m["commit"]) == 40
    assert m["status"] == "complete"
    assert m["files"] == 2
    assert m["size_bytes"] >= (2 << 20) + len(FILES["config.json"])
    assert m["active"] is False
    assert datetime.fromisoformat(m["last_modified"].replace("Z", "+00:00")).tzinfo is not None
    assert by_id[other]["files"] == 1

    # The active flag follows a hand edit of the .env file, no restart.
    set_default_model(api, repo)
    by_id = {m["model_id"]: m for m in api.get("/api/models").json()}
    assert by_id[repo]["active"] is True and by_id[other]["active"] is False
    set_default_model(api, other)
    by_id = {m["model_id"]: m for m in api.get("/api/models").json()}
    assert by_id[repo]["active"] is False and by_id[other]["active"] is True

    st = api.get("/api/models/status", params={"model_id": repo})
    assert st.status_code == 200
    assert {k: st.json()[k] for k in ("model_id", "status", "files", "commit", "active")} == {
        "model_id": repo, "status": "complete", "files": 2, "commit": m["commit"], "active": False}
    absent = api.get("/api/models/status", params={"model_id": uid_repo("absent")})
    assert absent.status_code == 200 and absent.json()["status"] == "not_found"
    assert_error(api.get("/api/models/status", params={"model_id": "../etc"}), 422)

    disk = api.get("/api/disk")
    assert disk.status_code == 200
    d = disk.json()
    assert d["cache_dir"] == str(api.settings.hf_cache)
    assert d["cache_bytes"] >= m["size_bytes"] + by_id[other]["size_bytes"]
    assert 0 < d["free_bytes"] <= d["total_bytes"]
    assert all(isinstance(d[k], int) for k in ("cache_bytes", "free_bytes", "total_bytes"))


def test_downloading_and_paused_download_listed(api_factory, sim):
    api = api_factory()
    repo = uid_repo("slow")
    sim.set_faults(Fault(repo=repo, path="model.safetensors", rate_bps=100_000))
    j = start_download(api, sim, repo)

    def listed(status):
        return next((m for m in api.get("/api/models").json() if m["model_id"] == repo
                     and m["status"] == status), None)

    m = wait_until(lambda: listed("downloading"), 20, message="listed as downloading")
    assert m["active"] is False
    assert api.get("/api/models/status", params={"model_id": repo}).json()["status"] == "downloading"

    r = api.post(f"/api/jobs/{j['job_id']}/pause")
    assert r.status_code == 200, r.text
    wait_job(api, j["job_id"], 20, statuses=("paused",))
    m = wait_until(lambda: listed("partial"), 10, message="listed as partial")
    assert m["commit"] is None and m["files"] == 0  # no snapshot until every file is verified
    assert m["size_bytes"] < 2 << 20
    assert api.get("/api/models/status", params={"model_id": repo}).json()["status"] == "partial"
    r = api.post(f"/api/jobs/{j['job_id']}/cancel")
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- verify
def test_verify_ok_then_corrupt_then_missing_offline(api_factory, sim):
    online = api_factory()
    repo = uid_repo("verify")
    download(online, sim, repo)
    # A second API on the same cache and job table whose Hub is a closed port: verify must not
    # need the Hub. The request counters prove the simulator is not asked either.
    api = api_factory(hf_endpoint=f"http://127.0.0.1:{free_port()}")
    before = {p: (sim.request_count(repo, p), sim.head_count(repo, p)) for p in FILES}

    r = api.post("/api/models/verify", params={"model_id": repo})
    assert r.status_code == 202, r.text
    v = r.json()
    assert v["kind"] == "verify" and v["model_id"] == repo
    v = wait_job(api, v["job_id"])
    assert v["status"] == "complete", v
    assert v["result"]["files_checked"] == 2
    assert v["result"]["mismatched"] == [] and v["result"]["missing"] == []

    # Flip one byte of the weights blob (in place: hard links to it see the same change).
    blob = blob_of(api, sim, repo, "model.safetensors")
    with open(blob, "r+b") as f:
        f.seek(12345)
        b = f.read(1)
        f.seek(12345)
        f.write(bytes([b[0] ^ 0xFF]))
    v = wait_job(api, api.post("/api/models/verify", params={"model_id": repo}).json()["job_id"])
    assert v["status"] == "failed", v
    assert v["error_code"] == "integrity_error" and v["error"]
    assert v["result"]["mismatched"] == ["model.safetensors"]
    assert v["result"]["missing"] == []

    # A deleted blob leaves a dangling snapshot link: reported missing.
    blob_of(api, sim, repo, "config.json").unlink()
    v = wait_job(api, api.post("/api/models/verify", json={"model_id": repo}).json()["job_id"])
    assert v["status"] == "failed" and v["error_code"] == "integrity_error"
    assert v["result"]["missing"] == ["config.json"]
    assert v["result"]["mismatched"] == ["model.safetensors"]
    st = api.get("/api/models/status", params={"model_id": repo}).json()
    assert st["status"] == "partial"

    assert {p: (sim.request_count(repo, p), sim.head_count(repo, p)) for p in FILES} == before
    assert_error(api.post("/api/models/verify", params={"model_id": uid_repo("nope")}), 404, "model_not_found")
    assert_error(api.post("/api/models/verify", params={"model_id": "../x"}), 422)


# --------------------------------------------------------------------------- delete
def test_delete_model(api_factory, sim):
    api = api_factory()
    repo, keep = uid_repo("del"), uid_repo("keep")
    download(api, sim, repo)
    download(api, sim, keep, {"config.json": b"{}"})
    size = next(m for m in api.get("/api/models").json() if m["model_id"] == repo)["size_bytes"]
    keep_tree = tree_snapshot(folder_of(api, keep))

    r = api.delete("/api/delete-model", params={"model_id": repo})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "deleted" and body["model_id"] == repo
    assert body["freed_bytes"] == size >= 2 << 20
    assert body["size_mb"] == pytest.approx(size / 2**20, abs=0.01)
    assert isinstance(body["message"], str) and body["message"]
    assert not folder_of(api, repo).exists()
    assert not any(p.name.startswith(".llmbox-trash") for p in api.settings.hf_cache.iterdir())
    assert api.get("/api/models/status", params={"model_id": repo}).json()["status"] == "not_found"
    assert [m["model_id"] for m in api.get("/api/models").json()] == [keep]
    assert tree_snapshot(folder_of(api, keep)) == keep_tree

    assert_error(api.delete("/api/delete-model", params={"model_id": repo}), 404, "model_not_found")
    assert_error(api.delete("/api/delete-model", params={"model_id": uid_repo("never")}), 404, "model_not_found")
    assert_error(api.delete("/api/delete-model"), 422)


def test_delete_active_model_needs_force(api_factory, sim):
    api = api_factory()
    repo = uid_repo("active")
    download(api, sim, repo)
    set_default_model(api, repo)
    env_before = api.settings.env_file.read_bytes()
    tree = tree_snapshot(folder_of(api, repo))

    assert_error(api.delete("/api/delete-model", params={"model_id": repo}), 409, "model_active")
    assert_error(api.delete("/api/delete-model", params={"model_id": repo, "force": "false"}), 409, "model_active")
    assert tree_snapshot(folder_of(api, repo)) == tree

    r = api.request("DELETE", "/api/delete-model", json={"model_id": repo, "force": True})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "deleted"
    assert not folder_of(api, repo).exists()
    assert api.settings.env_file.read_bytes() == env_before  # delete never edits the .env


def test_delete_during_download(api_factory, sim):
    api = api_factory()
    repo = uid_repo("busy")
    sim.set_faults(Fault(repo=repo, path="model.safetensors", rate_bps=150_000))
    j = start_download(api, sim, repo, {"config.json": b"{}", "model.safetensors": 4 << 20})
    wait_until(lambda: job(api, j["job_id"])["bytes_downloaded"] > 0, 20, message="bytes flowing")
    # the small file lands in the repo folder while the big one is still coming
    wait_until(lambda: blob_of(api, sim, repo, "config.json").exists(), 20, message="config.json placed")

    assert_error(api.delete("/api/delete-model", params={"model_id": repo}), 409, "download_in_progress")
    assert job(api, j["job_id"])["status"] in ("downloading", "verifying")
    assert folder_of(api, repo).exists()

    r = api.delete("/api/delete-model", params={"model_id": repo, "force": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "deleted"
    assert job(api, j["job_id"])["status"] == "cancelled"
    assert not folder_of(api, repo).exists()
    assert api.get("/api/models/status", params={"model_id": repo}).json()["status"] == "not_found"
    key = sim.file_info(repo, "model.safetensors")["etag"]
    staging = api.settings.hf_cache / ".llmbox-partial"
    wait_until(lambda: not list(staging.glob(f"{key}*")), 10, message="partials discarded")


def test_delete_traversal_and_symlink_refused(api_factory, sim, tmp_path):
    api = api_factory()
    repo = uid_repo("victim")
    download(api, sim, repo)
    cache = api.settings.hf_cache
    outside = tmp_path / "outside"
    (outside / "snapshots").mkdir(parents=True)
    sentinel = outside / "sentinel.txt"
    sentinel.write_text("must survive\n")
    (cache / "models--evil--link").symlink_to(outside, target_is_directory=True)
    cache_tree = tree_snapshot(cache)
    org, name = repo.split("/")

    bad_ids = ["../x", "/etc/passwd", f"models--{org}--{name}", f"{repo}/../../y", f"{org}/../{name}",
               "..", "org/..", f"{repo}\x00", "%2e%2e/x", "org/x y", "", f"{org}\\{name}"]
    for bad in bad_ids:
        r = api.delete("/api/delete-model", params={"model_id": bad, "force": "true"})
        assert 400 <= r.status_code < 500, (bad, r.status_code, r.text)
        assert_error(r, r.status_code)
        r = api.request("DELETE", "/api/delete-model", json={"model_id": bad, "force": True})
        assert 400 <= r.status_code < 500, (bad, r.status_code, r.text)
    # Raw query strings the server decodes itself: %2e%2e -> .., %00 -> NUL, %2f -> /.
    for raw in ("%2e%2e/x", "%2e%2e%2fx", f"{org}%2f..%2f..%2fetc", f"{org}/{name}%00", "..%2F..%2Fetc%2Fpasswd",
                f"{org}%2F{name}%2F..%2F..%2Fevil"):
        r = api.delete(f"/api/delete-model?model_id={raw}&force=true")
        assert_error(r, 422)
    # The symlink looks like a repo folder; it must not be followed or removed.
    assert_error(api.delete("/api/delete-model", params={"model_id": "evil/link", "force": "true"}), 404,
                 "model_not_found")
    assert_error(api.post("/api/models/verify", params={"model_id": "evil/link"}), 404, "model_not_found")
    assert "evil/link" not in [m["model_id"] for m in api.get("/api/models").json()]
    assert api.get("/api/models/status", params={"model_id": "evil/link"}).json()["status"] == "not_found"

    assert sentinel.read_text() == "must survive\n"
    assert (cache / "models--evil--link").is_symlink()
    assert tree_snapshot(cache) == cache_tree
    assert api.get("/api/models/status", params={"model_id": repo}).json()["status"] == "complete"


# --------------------------------------------------------------------------- activate without docker
def test_activate_without_docker_records_error(api_factory, sim):
    api = api_factory()  # docker_host points at a socket that does not exist
    env_before = api.settings.env_file.read_bytes()
    repo = uid_repo("act")
    j = start_download(api, sim, repo, activate="true")
    done = wait_until(lambda: (x := job(api, j["job_id"]))["status"] in FINAL
                      and "activate_error" in (x["result"] or {}) and x, 60,
                      message="download complete with activate_error")
    assert done["status"] == "complete"
    assert done["result"]["activate_error"] == "docker_unavailable"
    assert api.get("/api/models/status", params={"model_id": repo}).json()["status"] == "complete"
    assert api.settings.env_file.read_bytes() == env_before
    assert api.get("/api/jobs", params={"kind": "switch"}).json() == []
    assert api.get("/api/active-model").json()["model_id"] == "org/none"


def test_activate_error_reaches_the_webhook(api_factory, sim):
    """The callback of a download with activate=true carries what the activate step recorded."""
    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = None
    for port in range(9000, 9999):  # a 4-digit port: see the report on CALLBACK_PATTERN
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
            break
        except OSError:
            continue
    assert server is not None
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        api = api_factory()
        repo = uid_repo("hook")
        j = start_download(api, sim, repo, activate="true",
                          callback_url=f"http://127.0.0.1:{server.server_address[1]}/hook")
        wait_until(lambda: got, 30, message="webhook delivered")
        assert got[0]["job_id"] == j["job_id"] and got[0]["status"] == "complete"
        assert got[0]["result"]["activate_error"] == "docker_unavailable", got[0]["result"]
        assert job(api, j["job_id"])["result"]["activate_error"] == "docker_unavailable"
    finally:
        server.shutdown()
        server.server_close()


def test_failed_redownload_keeps_model_complete(api_factory, sim):
    """A later download request that fails (the Hub says 404, e.g. the repo went private) must not
    turn a model whose snapshot is fully on disk into 'partial' and block switching to it."""
    api = api_factory()
    repo = uid_repo("redl")
    download(api, sim, repo)
    tree = tree_snapshot(folder_of(api, repo))
    sim.set_faults(Fault(repo=repo, on="api", status=404))
    r = api.post("/api/download-model", params={"model_id": repo})
    assert r.status_code >= 400, r.text
    failed = api.get("/api/jobs", params={"kind": "download"}).json()[0]
    assert failed["model_id"] == repo and failed["status"] == "failed"
    sim.clear_faults()

    assert tree_snapshot(folder_of(api, repo)) == tree
    assert api.get("/api/models/status", params={"model_id": repo}).json()["status"] == "complete"
    assert next(m for m in api.get("/api/models").json() if m["model_id"] == repo)["status"] == "complete"
    r = api.put("/api/active-model", params={"model_id": repo, "restart": "false"})
    assert r.status_code == 202, r.text
    assert wait_job(api, r.json()["job_id"])["status"] == "complete"
    assert api.get("/api/active-model").json()["model_id"] == repo
