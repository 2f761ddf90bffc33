"""Downloads through the API against the hub simulator: layout, progress, selection, jobs, queue."""
from __future__ import annotations

import json
import os

from huggingface_hub import HfApi, snapshot_download, try_to_load_from_cache

from api.testing.hubsim import Fault

from ._dl import (FINAL, MiB, assert_error, assert_verified, blob_files, hub_dir, job, part_files, random_bytes,
                  repo_dir, sha256_file, staging, start, wait_bytes, wait_complete)
from .servers import wait_until

NESTED_FILES = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}',
    "README.md": b"# test model\n",
    "tokenizer/tokenizer.json": b'{"version": "1.0", "vocab": {"a": 0}}' * 50,
    "weights/deep/model-00001-of-00002.safetensors": 14 * MiB + 123,
    "model-00002-of-00002.safetensors": 11 * MiB,
    "plain-big.dat": 10 * MiB + 7,   # LFS by size, no LFS extension
}


def _sizes(sim, repo_id, paths, revision="main"):
    return sum(sim.file_info(repo_id, p, revision)["size"] for p in paths)


def test_multi_file_repo_is_a_valid_hf_cache(api, sim):
    repo = "dl/nested-multi"
    commit = sim.add_repo(repo, NESTED_FILES)
    total = _sizes(sim, repo, NESTED_FILES)
    # Slow enough to see progress on the way: 4 MB/s per connection.
    sim.set_faults(Fault(repo=repo, rate_bps=4_000_000))

    first = start(api, repo)
    assert first["status"] in ("queued", "downloading")
    assert first["kind"] == "download" and first["model_id"] == repo and first["revision"] == "main"
    assert first["bytes_total"] == total, "bytes_total must be known from the first answer"
    assert first["files_total"] == len(NESTED_FILES)
    assert first["status_url"] == f"/api/jobs/{first['job_id']}"
    assert first["progress"] == 0 and first["completed_at"] is None

    seen = []

    def poll():
        j = job(api, first["job_id"])
        seen.append(j)
        return j["status"] in FINAL and j

    final = wait_until(poll, 60, interval=0.1, message="download to finish")
    assert final["status"] == "complete", final
    assert len(seen) >= 3, "the download finished too quickly to observe progress"
    prev = 0
    for j in seen:
        assert j["bytes_total"] == total
        assert j["files_total"] == len(NESTED_FILES)
        assert j["bytes_downloaded"] >= prev, [s["bytes_downloaded"] for s in seen]
        assert j["bytes_downloaded"] <= total
        assert 0 <= j["files_done"] <= j["files_total"]
        assert 0 <= j["progress"] <= 100
        if j["status"] != "complete":
            assert j["progress"] < 100, j
        prev = j["bytes_downloaded"]
    assert any(0 < j["bytes_downloaded"] < total for j in seen), "no intermediate progress observed"
    assert final["progress"] == 100 and final["bytes_downloaded"] == total
    assert final["files_done"] == final["files_total"] == len(NESTED_FILES)
    assert final["error"] is None and final["error_code"] is None and final["completed_at"]
    assert final["result"]["commit"] == commit

    cache = hub_dir(api)
    rdir = repo_dir(api, repo)
    assert (rdir / "refs" / "main").read_text() == commit
    assert (rdir / "trees" / f"{commit}.json").is_file()
    assert_verified(api, sim, repo, commit, NESTED_FILES)
    for name, blob in blob_files(api, repo).items():
        assert not name.endswith((".incomplete", ".tmp", ".part")), name
    assert part_files(api) == [], "verified blobs must leave the staging area"

    # The unmodified huggingface_hub client accepts the cache offline.
    path = snapshot_download(repo, cache_dir=cache, local_files_only=True)
    assert os.path.realpath(path) == os.path.realpath(rdir / "snapshots" / commit)
    for p, content in NESTED_FILES.items():
        if isinstance(content, bytes):
            assert (rdir / "snapshots" / commit / p).read_bytes() == content
    cached = try_to_load_from_cache(repo, "weights/deep/model-00001-of-00002.safetensors", cache_dir=cache)
    assert isinstance(cached, str) and os.path.exists(cached)
    assert try_to_load_from_cache(repo, "config.json", cache_dir=cache) is not None
    result = HfApi(endpoint=sim.url).verify_repo_checksums(repo, cache_dir=cache, token=False)
    assert result.mismatches == [] and result.missing_paths == [], result
    assert result.checked_count == len(NESTED_FILES)


def test_include_exclude_patterns(api, sim):
    repo = "dl/gguf-quants"
    files = {"config.json": b"{}", "q4/model-Q4_K_M.gguf": 3 * MiB, "q8/model-Q8_0.gguf": 5 * MiB,
             "model.safetensors": 4 * MiB, "README.md": b"quants"}
    commit = sim.add_repo(repo, files)

    j = start(api, repo, include="*Q4_K_M.gguf,config.json")
    assert j["files_total"] == 2
    assert j["bytes_total"] == _sizes(sim, repo, ["config.json", "q4/model-Q4_K_M.gguf"])
    wait_complete(api, j["job_id"])
    snap = repo_dir(api, repo) / "snapshots" / commit
    got = sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_symlink())
    assert got == ["config.json", "q4/model-Q4_K_M.gguf"]
    assert_verified(api, sim, repo, commit, got)
    for skipped in ("q8/model-Q8_0.gguf", "model.safetensors", "README.md"):
        assert sim.served_bytes(repo, skipped) == 0, skipped

    j = start(api, repo, exclude="*.gguf", include="*")
    assert j["files_total"] == 3
    wait_complete(api, j["job_id"])
    assert sim.served_bytes(repo, "model.safetensors") == 4 * MiB
    assert sim.served_bytes(repo, "q8/model-Q8_0.gguf") == 0
    assert sim.served_bytes(repo, "q4/model-Q4_K_M.gguf") == 3 * MiB   # not fetched a second time

    r = api.post("/api/download-model", params={"model_id": repo, "include": "*.does-not-exist"})
    assert_error(r, 404, "no_matching_files")


def test_revision_pinned_to_a_commit(api, sim):
    repo = "dl/pinned"
    old = sim.add_repo(repo, {"config.json": b'{"v": 1}', "model.safetensors": 3 * MiB})
    new = sim.add_repo(repo, {"config.json": b'{"v": 2}', "model.safetensors": 3 * MiB, "extra.bin": 1 * MiB})
    assert old != new

    j = start(api, repo, revision=old)
    assert j["revision"] == old and j["files_total"] == 2
    done = wait_complete(api, j["job_id"])
    assert done["result"]["commit"] == old
    rdir = repo_dir(api, repo)
    assert (rdir / "snapshots" / old / "config.json").read_bytes() == b'{"v": 1}'
    assert not (rdir / "snapshots" / new).exists()
    assert not (rdir / "refs" / "main").exists(), "a commit pin must not move refs/main"
    assert_verified(api, sim, repo, old, ["config.json", "model.safetensors"])
    assert sim.served_bytes(repo, "extra.bin") == 0
    path = snapshot_download(repo, revision=old, cache_dir=hub_dir(api), local_files_only=True)
    assert os.path.basename(path) == old


def test_second_post_while_running_returns_the_same_job(api, sim):
    repo = "dl/dedup-post"
    sim.add_repo(repo, {"model.safetensors": 8 * MiB})
    sim.set_faults(Fault(repo=repo, rate_bps=1_000_000))
    first = start(api, repo)
    again = api.post("/api/download-model", params={"model_id": repo})
    assert again.status_code == 200, again.text
    assert again.json()["job_id"] == first["job_id"]
    body_form = api.post("/api/download-model", json={"model_id": repo, "revision": "main"})
    assert body_form.status_code == 200 and body_form.json()["job_id"] == first["job_id"]
    jobs = api.get("/api/jobs", params={"kind": "download"}).json()
    assert [j["job_id"] for j in jobs if j["model_id"] == repo] == [first["job_id"]]
    cancelled = api.post(f"/api/jobs/{first['job_id']}/cancel", params={"discard": "true"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # Finished: a new POST makes a new job.
    sim.clear_faults()
    third = start(api, repo)
    assert third["job_id"] != first["job_id"]
    wait_complete(api, third["job_id"])


def test_download_progress_route(api, sim):
    assert api.get("/api/download-progress").json() == {"status": "idle"}
    assert api.get("/api/download-progress", params={"model_id": "dl/never"}).json() == {"status": "idle"}
    r = api.get("/api/download-progress", params={"job_id": "0123456789abcdef"})
    assert_error(r, 404, "job_not_found")

    a, b = "dl/progress-a", "dl/progress-b"
    sim.add_repo(a, {"config.json": b'{"a": 1}', "model.safetensors": 2 * MiB})
    sim.add_repo(b, {"config.json": b'{"b": 1}'})
    ja = start(api, a)
    wait_complete(api, ja["job_id"])
    jb = start(api, b)
    wait_complete(api, jb["job_id"])

    by_id = api.get("/api/download-progress", params={"job_id": ja["job_id"]}).json()
    assert by_id["job_id"] == ja["job_id"] and by_id["model"] == a == by_id["model_id"]
    assert by_id["status"] == "complete" and by_id["progress"] == 100
    by_model = api.get("/api/download-progress", params={"model_id": a}).json()
    assert by_model["job_id"] == ja["job_id"] and by_model["model"] == a
    newest = api.get("/api/download-progress").json()
    assert newest["job_id"] == jb["job_id"] and newest["model"] == b


def test_jobs_list_filters_and_order(api, sim):
    ok = "dl/list-ok"
    sim.add_repo(ok, {"config.json": b"{}"})
    j1 = start(api, ok)
    wait_complete(api, j1["job_id"])
    bad = api.post("/api/download-model", params={"model_id": "dl/list-missing"})
    assert_error(bad, 404, "repo_not_found")
    sim.add_repo("dl/list-ok2", {"config.json": b"{}"})
    j3 = start(api, "dl/list-ok2")
    wait_complete(api, j3["job_id"])

    everything = api.get("/api/jobs").json()
    assert isinstance(everything, list) and len(everything) == 3
    assert everything[0]["job_id"] == j3["job_id"] and everything[-1]["job_id"] == j1["job_id"]
    complete = api.get("/api/jobs", params={"status": "complete"}).json()
    assert [j["job_id"] for j in complete] == [j3["job_id"], j1["job_id"]]
    failed = api.get("/api/jobs", params={"status": "failed"}).json()
    assert len(failed) == 1 and failed[0]["model_id"] == "dl/list-missing"
    assert failed[0]["error_code"] == "repo_not_found" and failed[0]["error"]
    assert api.get("/api/jobs", params={"kind": "verify"}).json() == []
    assert len(api.get("/api/jobs", params={"kind": "download"}).json()) == 3
    page = api.get("/api/jobs", params={"limit": 1, "offset": 1}).json()
    assert len(page) == 1 and page[0]["job_id"] == everything[1]["job_id"]
    assert_error(api.get("/api/jobs", params={"status": "bogus"}), 422)
    assert_error(api.get("/api/jobs", params={"limit": 0}), 422)
    assert_error(api.get("/api/jobs/0123456789abcdef"), 404, "job_not_found")


def test_sse_events_until_final(api, sim):
    repo = "dl/sse"
    sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 6 * MiB})
    sim.set_faults(Fault(repo=repo, rate_bps=2_000_000))
    j = start(api, repo)
    events = []
    with api.stream("GET", f"/api/jobs/{j['job_id']}/events", timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:].strip()))
    # The stream ended by itself, at a final state.
    assert events, "no events"
    assert events[-1]["status"] == "complete"
    assert all(e["job_id"] == j["job_id"] for e in events)
    assert len(events) >= 2
    sizes = [e["bytes_downloaded"] for e in events]
    assert sizes == sorted(sizes)
    assert all(e["status"] not in FINAL for e in events[:-1])
    assert_error(api.get("/api/jobs/0123456789abcdef/events"), 404, "job_not_found")


def test_auto_false_gives_instructions_and_writes_nothing(api, sim):
    repo = "dl/manual"
    sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 1 * MiB})
    r = api.post("/api/download-model", params={"model_id": repo, "auto": "false"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "manual" and body["model_id"] == repo
    assert any(repo in line for line in body["instructions"])
    r2 = api.post("/api/download-model", json={"model_id": repo, "auto": False})
    assert r2.status_code == 200 and r2.json()["status"] == "manual"
    assert api.get("/api/jobs").json() == []
    assert not repo_dir(api, repo).exists()
    assert sim.request_count(repo, "model.safetensors") == 0 and sim.head_count(repo, "model.safetensors") == 0


def test_present_blobs_are_reused_and_corrupt_ones_refetched(api, sim):
    repo = "dl/reuse"
    # Generated content depends on (repo, path): the weights are the same bytes in both commits.
    c1 = sim.add_repo(repo, {"config.json": b'{"v": 1}', "model.safetensors": 12 * MiB})
    j = start(api, repo)
    wait_complete(api, j["job_id"])
    served = sim.served_bytes(repo, "model.safetensors")
    assert served == 12 * MiB

    c2 = sim.add_repo(repo, {"config.json": b'{"v": 2}', "model.safetensors": 12 * MiB})
    assert c2 != c1
    j2 = start(api, repo)
    done = wait_complete(api, j2["job_id"])
    assert sim.served_bytes(repo, "model.safetensors") == served, "a verified blob was fetched again"
    assert done["result"]["files_reused"] == 1
    assert (repo_dir(api, repo) / "refs" / "main").read_text() == c2
    assert_verified(api, sim, repo, c2, ["config.json", "model.safetensors"])
    assert_verified(api, sim, repo, c1, ["config.json", "model.safetensors"])

    # A blob of the right size but wrong content is not trusted.
    info = sim.file_info(repo, "model.safetensors")
    blob = repo_dir(api, repo) / "blobs" / info["etag"]
    with open(blob, "r+b") as f:
        f.seek(5 * MiB)
        byte = f.read(1)
        f.seek(5 * MiB)
        f.write(bytes([byte[0] ^ 0xFF]))
    j3 = start(api, repo)
    wait_complete(api, j3["job_id"])
    assert sim.served_bytes(repo, "model.safetensors") == 2 * served
    assert sha256_file(blob) == info["sha256"]


def _slow(sim, repo, rate=2_000_000):
    sim.set_faults(Fault(repo=repo, rate_bps=rate))


def test_pause_keeps_bytes_and_resume_completes(api, sim):
    repo = "dl/pause"
    size = 16 * MiB
    commit = sim.add_repo(repo, {"model.safetensors": size})
    _slow(sim, repo, 1_000_000)
    j = start(api, repo)
    wait_bytes(api, j["job_id"], 3 * MiB)
    r = api.post(f"/api/jobs/{j['job_id']}/pause")
    assert r.status_code == 200, r.text
    paused = r.json()
    assert paused["status"] == "paused"
    kept = paused["bytes_downloaded"]
    assert kept >= 3 * MiB
    info = sim.file_info(repo, "model.safetensors")
    part = staging(api) / f"{info['sha256']}.part"
    state = json.loads((staging(api) / f"{info['sha256']}.json").read_text())
    assert part.exists() and sum(state["done"]) >= 3 * MiB
    # Paused means stopped: no more bytes go out.
    served_at_pause = sim.served_bytes(repo, "model.safetensors")
    assert job(api, j["job_id"])["status"] == "paused"
    assert_error(api.post(f"/api/jobs/{j['job_id']}/pause"), 409)

    sim.clear_faults()
    r = api.post(f"/api/jobs/{j['job_id']}/resume")
    assert r.status_code == 200 and r.json()["status"] in ("queued", "downloading")
    done = wait_complete(api, j["job_id"])
    assert done["bytes_downloaded"] == size
    served = sim.served_bytes(repo, "model.safetensors")
    assert served >= served_at_pause
    assert served <= size + 2 * MiB, f"resume re-fetched {served - size} bytes"
    assert_verified(api, sim, repo, commit, ["model.safetensors"])
    assert not part.exists()


def test_cancel_keeps_bytes_discard_deletes_them_and_resume_works(api, sim):
    repo = "dl/cancel"
    size = 12 * MiB
    commit = sim.add_repo(repo, {"model.safetensors": size})
    info = sim.file_info(repo, "model.safetensors")
    part = staging(api) / f"{info['sha256']}.part"
    _slow(sim, repo, 1_000_000)

    j = start(api, repo)
    wait_bytes(api, j["job_id"], 2 * MiB)
    r = api.post(f"/api/jobs/{j['job_id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["completed_at"]
    assert part.exists(), "cancel without discard keeps the partial bytes"
    assert_error(api.post(f"/api/jobs/{j['job_id']}/cancel"), 409)

    r = api.post(f"/api/jobs/{j['job_id']}/resume")
    assert r.status_code == 200, r.text
    wait_bytes(api, j["job_id"], 6 * MiB)
    r = api.post(f"/api/jobs/{j['job_id']}/cancel", params={"discard": "true"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "cancelled"
    assert body["result"]["freed_bytes"] > 0
    assert not part.exists() and not part.with_suffix(".json").exists()
    assert not (repo_dir(api, repo) / "blobs" / info["etag"]).exists()

    sim.clear_faults()
    sim_before = sim.served_bytes(repo, "model.safetensors")
    r = api.post(f"/api/jobs/{j['job_id']}/resume")
    assert r.status_code == 200
    wait_complete(api, j["job_id"])
    assert sim.served_bytes(repo, "model.safetensors") - sim_before >= size, "discarded bytes came back from nowhere"
    assert_verified(api, sim, repo, commit, ["model.safetensors"])


def test_state_conflicts(api, sim):
    repo = "dl/conflicts"
    sim.add_repo(repo, {"config.json": b"{}"})
    j = start(api, repo)
    wait_complete(api, j["job_id"])
    for action in ("pause", "cancel", "resume"):
        body = assert_error(api.post(f"/api/jobs/{j['job_id']}/{action}"), 409)
        assert body["error"] == "invalid_state"
    assert job(api, j["job_id"])["status"] == "complete"
    assert_error(api.post("/api/jobs/0123456789abcdef/pause"), 404, "job_not_found")


def test_queue_limit_and_queue_full(api_factory, sim):
    api = api_factory(max_concurrent_downloads=1, max_queue_length=1)
    a, b, c = "dl/queue-a", "dl/queue-b", "dl/queue-c"
    sim.add_repo(a, {"model.safetensors": 6 * MiB})
    sim.add_repo(b, {"config.json": b'{"b": 1}'})
    sim.add_repo(c, {"config.json": b'{"c": 1}'})
    sim.set_faults(Fault(repo=a, rate_bps=1_000_000))

    ja = start(api, a)
    jb = start(api, b)
    assert jb["status"] == "queued"
    r = api.post("/api/download-model", params={"model_id": c})
    assert_error(r, 429, "queue_full")
    assert int(r.headers["Retry-After"]) > 0
    assert all(j["model_id"] != c for j in api.get("/api/jobs").json())

    def a_done():
        # B first: if A is still running when read after B, B was read while A ran.
        sb = job(api, jb["job_id"])
        sa = job(api, ja["job_id"])
        if sa["status"] not in FINAL:
            assert sb["status"] == "queued", (sa, sb)
        return sa["status"] in FINAL and sa

    assert wait_until(a_done, 60, interval=0.1)["status"] == "complete"
    done_b = wait_complete(api, jb["job_id"])
    assert done_b["started_at"] >= job(api, ja["job_id"])["completed_at"]
    jc = start(api, c)    # room again
    wait_complete(api, jc["job_id"])


def test_disk_refusal_writes_nothing(api_factory, sim):
    api = api_factory(disk_reserve_mb=1 << 40)
    repo = "dl/no-room"
    sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 2 * MiB})
    r = api.post("/api/download-model", params={"model_id": repo})
    assert_error(r, 507, "insufficient_storage")
    assert not repo_dir(api, repo).exists()
    assert part_files(api) == []
    assert sim.request_count(repo, "model.safetensors") == 0
    assert api.get("/api/jobs").json() == []


def test_concurrent_jobs_share_one_transfer(api, sim):
    shared = random_bytes(12 * MiB, "shared-blob")
    a, b = "dl/twin-a", "dl/twin-b"
    ca = sim.add_repo(a, {"config.json": b'{"twin": "a"}', "model.safetensors": shared})
    cb = sim.add_repo(b, {"config.json": b'{"twin": "b"}', "weights/model.safetensors": shared})
    sim.set_faults(Fault(path="*model.safetensors", rate_bps=1_000_000))

    ja = start(api, a)
    wait_bytes(api, ja["job_id"], 1)
    jb = start(api, b)
    wait_complete(api, ja["job_id"])
    wait_complete(api, jb["job_id"])
    total = sim.served_bytes(a, "model.safetensors") + sim.served_bytes(b, "weights/model.safetensors")
    assert total <= len(shared) + 1 * MiB, f"the shared blob was served {total} bytes for {len(shared)}"
    assert_verified(api, sim, a, ca, ["config.json", "model.safetensors"])
    assert_verified(api, sim, b, cb, ["config.json", "weights/model.safetensors"])
    assert part_files(api) == []
