"""A hostile Hub (or mirror) cannot make the API write outside MODELS_DIR, and malformed Hub JSON is
a 502 hub_error with the failed job recorded.

The hostile server below speaks just enough of the Hub API for huggingface_hub's HfApi.repo_info
and list_repo_tree, and serves file bytes on /resolve/ whose hashes match what it announced, so
that only the metadata is hostile. The assertions look at the files on disk.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from api.download.cache import HFCache
from api.download.hub import FileEntry, Plan
from api.errors import DownloadError
from api.jobs.store import JobStore

from ._dl import assert_error, job, wait_complete, wait_status

pytestmark = pytest.mark.timeout(120)
GOOD_COMMIT = "c0ffee" + "0" * 34
CONFIG = b'{"model_type": "llama"}'


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_entry(path: str, data: bytes, **over) -> dict:
    return {"type": "file", "path": path, "size": len(data), "oid": git_sha1(data), **over}


class HostileHub:
    """Answers repo_info with `info` (a dict, or raw bytes), the tree with `tree` (a list, or raw
    bytes) and /resolve/ with `files[path]`."""

    def __init__(self):
        self.info: dict | bytes = {}
        self.tree: list | bytes = []
        self.files: dict[str, bytes] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json", head: bool = False):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{git_sha1(body)}"')
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _answer(self, head: bool):
                path = unquote(urlsplit(self.path).path)
                if path.startswith("/api/models/") and "/tree/" in path:
                    body = hub.tree
                elif path.startswith("/api/models/"):
                    body = hub.info
                elif "/resolve/" in path:
                    name = path.split("/resolve/", 1)[1].split("/", 1)[1]
                    data = hub.files.get(name)
                    if data is None:
                        return self._send(404, b'{"error": "no such file"}', head=head)
                    return self._send(200, data, "application/octet-stream", head)
                else:
                    return self._send(404, b"{}", head=head)
                self._send(200, body if isinstance(body, bytes) else json.dumps(body).encode(), head=head)

            def do_GET(self):
                self._answer(False)

            def do_HEAD(self):
                self._answer(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, repo: str, commit: str, entries: list[dict], files: dict[str, bytes]):
        self.info = {"id": repo, "sha": commit, "siblings": []}
        self.tree = entries
        self.files = files

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    h = HostileHub()
    yield h
    h.close()


def _outside(tmp: Path) -> list[Path]:
    """Everything under the test's folder that is neither the cache nor the API's own state."""
    own = {"models", "box.env", "state.db", "state.db-wal", "state.db-shm"}
    return sorted(p for p in tmp.rglob("*") if p.relative_to(tmp).parts[0] not in own)


def _planted(tmp: Path) -> list[Path]:
    return sorted(p for p in tmp.rglob("*planted*"))


# Each case: (commit, tree entries, served files). Relative to the snapshot folder
# (tmp/models/hub/models--org--name/snapshots/<commit>) five '..' reach the test's folder.
UP5 = "../../../../../"
CASES = {
    "path_traversal": (GOOD_COMMIT, [file_entry("config.json", CONFIG), file_entry(UP5 + "planted/x", CONFIG)],
                       {"config.json": CONFIG, UP5 + "planted/x": CONFIG}),
    "absolute_path": (GOOD_COMMIT, [file_entry("{tmp}/planted-abs", CONFIG)], {"{tmp}/planted-abs": CONFIG}),
    "backslash_path": (GOOD_COMMIT, [file_entry("..\\planted-bs", CONFIG)], {"..\\planted-bs": CONFIG}),
    "nul_path": (GOOD_COMMIT, [file_entry("planted\x00x", CONFIG)], {}),
    "dot_segment": (GOOD_COMMIT, [file_entry("a/./planted", CONFIG)], {"a/./planted": CONFIG}),
    # 40 characters of '../' and a name: snapshots/<commit> four levels up is the test's folder.
    "commit_traversal": ("../../../../planted-commit".ljust(40, "x"), [file_entry("config.json", CONFIG)],
                         {"config.json": CONFIG}),
    "commit_uppercase": (GOOD_COMMIT.upper(), [file_entry("config.json", CONFIG)], {"config.json": CONFIG}),
    # The blob's staged name is <oid>.part in <cache>/.llmbox-partial: three '..' reach the test's folder.
    "oid_traversal": (GOOD_COMMIT, [file_entry("config.json", CONFIG, oid="../../../planted-oid")],
                      {"config.json": CONFIG}),
    "lfs_oid_traversal": (GOOD_COMMIT, [file_entry("model.safetensors", CONFIG, lfs={
        "oid": "../../../planted-lfs", "size": len(CONFIG), "pointerSize": 130})], {"model.safetensors": CONFIG}),
    "lfs_oid_short": (GOOD_COMMIT, [file_entry("model.safetensors", CONFIG, lfs={
        "oid": "ab" * 20, "size": len(CONFIG), "pointerSize": 130})], {"model.safetensors": CONFIG}),
    "lfs_size_mismatch": (GOOD_COMMIT, [file_entry("model.safetensors", CONFIG, lfs={
        "oid": hashlib.sha256(CONFIG).hexdigest(), "size": 1 << 40, "pointerSize": 130})],
        {"model.safetensors": CONFIG}),
    "negative_size": (GOOD_COMMIT, [file_entry("config.json", CONFIG, size=-5)], {"config.json": CONFIG}),
    "string_size": (GOOD_COMMIT, [file_entry("config.json", CONFIG, size="23")], {"config.json": CONFIG}),
    "file_and_folder": (GOOD_COMMIT, [file_entry("a", CONFIG), file_entry("a/b", CONFIG)],
                        {"a": CONFIG, "a/b": CONFIG}),
}


def _fill(v, tmp: str):
    """The case with {tmp} replaced by the test's folder (an absolute path that must stay unwritten)."""
    if isinstance(v, str):
        return v.replace("{tmp}", tmp)
    if isinstance(v, dict):
        return {_fill(k, tmp): _fill(x, tmp) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_fill(x, tmp) for x in v)
    return v


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_metadata_is_refused_and_nothing_lands_outside(api_factory, hostile, tmp_path, case):
    commit, entries, files = _fill(CASES[case], str(tmp_path))
    repo = f"evil/{case.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    hostile.serve(repo, commit, entries, files)
    api = api_factory(hf_endpoint=hostile.url, max_retries=0)
    r = api.post("/api/download-model", params={"model_id": repo})
    body = assert_error(r, 502, "hub_error")
    assert "metadata" in body["detail"], body
    failed = job(api, body["job_id"])
    assert failed["status"] == "failed" and failed["error_code"] == "hub_error", failed
    assert _planted(tmp_path) == [] and _outside(tmp_path) == []
    assert not (api.settings.hf_cache / ("models--" + repo.replace("/", "--")) / "snapshots").exists()


@pytest.mark.parametrize("info,tree", [
    (b"<html>Bad gateway</html>", []),                                      # repo_info not JSON
    (b'{"id": "x", "sha": "' + GOOD_COMMIT.encode() + b'"', []),            # truncated JSON
    (None, b"<html>not a tree</html>"),                                     # tree not JSON
    (None, [{"type": "file", "size": 3}]),                                  # entry without path/oid
    (None, [{"type": "file", "path": "a", "size": 3, "oid": GOOD_COMMIT, "lfs": {"oid": 5}}]),  # lfs shape
])
def test_malformed_hub_json_is_a_502_hub_error_with_the_job_recorded(api_factory, hostile, tmp_path, info, tree):
    repo = f"bad/json-{uuid.uuid4().hex[:6]}"
    hostile.serve(repo, GOOD_COMMIT, [], {})
    if info is not None:
        hostile.info = info
    hostile.tree = tree
    api = api_factory(hf_endpoint=hostile.url, max_retries=0)
    body = assert_error(api.post("/api/download-model", params={"model_id": repo}), 502, "hub_error")
    failed = job(api, body["job_id"])
    assert failed["status"] == "failed" and failed["error_code"] == "hub_error", failed
    assert failed["model_id"] == repo
    assert _outside(tmp_path) == []


def test_a_good_tree_from_the_same_server_downloads(api_factory, hostile, tmp_path):
    """The hostile server is a working Hub when its metadata is sound: the refusals above are
    about the metadata, not the server."""
    repo = f"good/repo-{uuid.uuid4().hex[:6]}"
    hostile.serve(repo, GOOD_COMMIT, [file_entry("config.json", CONFIG), file_entry("sub/tok.json", b"{}")],
                  {"config.json": CONFIG, "sub/tok.json": b"{}"})
    api = api_factory(hf_endpoint=hostile.url, max_retries=0)
    r = api.post("/api/download-model", params={"model_id": repo})
    assert r.status_code == 202, r.text
    wait_complete(api, r.json()["job_id"])
    snap = api.settings.hf_cache / ("models--" + repo.replace("/", "--")) / "snapshots" / GOOD_COMMIT
    assert (snap / "config.json").read_bytes() == CONFIG and (snap / "sub/tok.json").read_bytes() == b"{}"
    assert _outside(tmp_path) == []


# ---------------------------------------------------------------- the cache's own containment check
def _plan(commit: str, files: list[FileEntry]) -> Plan:
    return Plan("org/name", "main", commit, files, files)


@pytest.mark.parametrize("commit,path,key", [
    (GOOD_COMMIT, UP5 + "planted/x", git_sha1(CONFIG)),
    ("../../../../planted-commit".ljust(40, "x"), "config.json", git_sha1(CONFIG)),
    (GOOD_COMMIT, "config.json", "../../../../planted-key"),
])
def test_cache_refuses_to_place_outside_even_unchecked_plans(tmp_path, commit, path, key):
    """Behind the metadata checks: the cache itself resolves every path before writing."""
    cache = HFCache(tmp_path / "models" / "hub")
    with pytest.raises(DownloadError) as e:
        cache.place_snapshot(_plan(commit, [FileEntry(path, len(CONFIG), key)]))
    assert e.value.code == "hub_error"
    with pytest.raises(DownloadError):
        cache.staged(key) if key.startswith("..") else cache.blob_path("org/name", "../../x")
    assert _planted(tmp_path) == [] and _outside(tmp_path) == []


def test_cache_does_not_follow_a_planted_symlink_out(tmp_path):
    """A folder inside the snapshot that is a symlink to elsewhere (left by anything) is not
    written through."""
    cache = HFCache(tmp_path / "models" / "hub")
    elsewhere = tmp_path / "models" / "elsewhere"   # outside the hub cache, still inside tmp
    elsewhere.mkdir(parents=True)
    snap = cache.repo_dir("org/name") / "snapshots" / GOOD_COMMIT
    snap.mkdir(parents=True)
    os.symlink(elsewhere, snap / "sub")
    with pytest.raises(DownloadError):
        cache.place_snapshot(_plan(GOOD_COMMIT, [FileEntry("sub/planted", len(CONFIG), git_sha1(CONFIG))]))
    assert list(elsewhere.iterdir()) == []


def test_a_stored_hostile_plan_fails_its_job_and_submits_still_work(api_factory, sim, tmp_path):
    """A plan already in the job table (written before these checks existed) is refused by the
    cache when its job runs; it neither writes outside nor breaks other submits' disk check."""
    bad = {"path": UP5 + "planted/x", "size": len(CONFIG), "blob_id": "../../../planted-key", "lfs_sha256": None}
    store = JobStore(tmp_path / "state.db")
    store.insert({"job_id": "ab" * 8, "kind": "download", "model_id": "evil/stored", "revision": "main",
                  "status": "queued", "created_at": "2026-01-01T00:00:00.000Z",
                  "params": {"include": None, "exclude": None, "activate": False},
                  "plan": {"repo_id": "evil/stored", "revision": "main", "commit": GOOD_COMMIT,
                           "files": [bad], "tree": [bad]}})
    store.close()
    api = api_factory()
    done = wait_status(api, "ab" * 8)
    assert done["status"] == "failed" and done["error_code"] == "hub_error", done
    repo = f"good/after-{uuid.uuid4().hex[:6]}"
    sim.add_repo(repo, {"config.json": CONFIG})
    r = api.post("/api/download-model", params={"model_id": repo})
    assert r.status_code == 202, r.text
    wait_complete(api, r.json()["job_id"])
    assert _planted(tmp_path) == [] and _outside(tmp_path) == []
